"""Every spec is well formed, and every architecture builds and runs at its declared shapes."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch

from dlopt.models.registry import (
    create_model,
    entry_module,
    get_spec,
    list_specs,
    make_inputs,
    make_model_config,
    resolve_dims,
)
from dlopt.models.spec import BATCH, SEQ, ExportFormat, PruneMethod, QuantMethod, Stage

SPECS = list_specs()
NAMES = [s.name for s in SPECS]
ZOO_MD_NAMES = {
    "perceptron", "mlp", "cnn", "simple_cnn", "lenet5", "resnet18", "rnn", "lstm", "bilstm", "gru", "text_lstm",
    "lstm_attention", "seq2seq_gru", "transformer_classifier", "transformer_seq2seq", "vit", "gan", "autoencoder", "vae",
    "dqn", "bert_classifier",
}


def test_registry_covers_the_zoo() -> None:
    # Every architecture of ZOO.md is registered once; a new architecture needs no edit here.
    assert ZOO_MD_NAMES <= set(NAMES)
    assert len(NAMES) == len(set(NAMES))


def _dims_ok(spec, shape) -> None:
    fields = {f.name for f in dataclasses.fields(spec.config)}
    for d in shape:
        if isinstance(d, str) and d not in (BATCH, SEQ):
            assert d.lstrip("*") in fields, f"{spec.name}: dim {d!r} names no config field"
        elif not isinstance(d, str):
            assert isinstance(d, int) and d > 0


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_spec_schema(spec) -> None:
    assert spec.summary and spec.dataset and spec.metric and spec.source
    module, _, attr = spec.builder.partition(":")
    assert callable(getattr(importlib.import_module(module), attr))
    assert dataclasses.is_dataclass(spec.config)
    fields = {f.name for f in dataclasses.fields(spec.config)}
    assert set(spec.tiny) <= fields and set(spec.train_defaults) <= fields
    for t in (*spec.inputs, *spec.outputs):
        _dims_ok(spec, t.shape)
        assert t.dtype in {"float32", "int64"}
        assert t.shape[0] == BATCH, "the batch axis comes first"
    assert len(set(spec.input_names)) == len(spec.inputs) and len(set(spec.output_names)) == len(spec.outputs)
    for token_input in (t for t in spec.inputs if t.dtype == "int64"):
        assert token_input.high is not None, "token ids need an upper bound (the vocabulary)"
    # every capability left out is explained on the spec
    for missing in (set(Stage) - spec.stages) | (set(ExportFormat) - spec.formats):
        assert str(missing) in spec.limits, f"{spec.name}: no reason given for lacking {missing}"
    for kind, declared, every in (("prune", spec.prune_methods, PruneMethod), ("quantize", spec.quant_methods, QuantMethod)):
        if kind in {str(s) for s in spec.stages}:
            for m in set(every) - declared:
                assert f"{kind}:{m}" in spec.limits, f"{spec.name}: no reason given for lacking {kind} {m}"
    method_keys = {k for k in spec.limits if k.partition(":")[0] in {"prune", "quantize"} and ":" in k}
    assert set(spec.limits) <= {*map(str, Stage), *map(str, ExportFormat)} | {k for k in spec.limits if "." in k} | method_keys
    assert (spec.trainer is not None) == (Stage.TRAIN in spec.stages)
    assert spec.tolerance.atol > 0 and spec.tolerance.rtol > 0
    assert spec.torchscript in {"trace", "script"}


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_tiny_forward_at_declared_shapes(spec) -> None:
    cfg = make_model_config(spec, tiny=True)
    model = create_model(spec, cfg)
    net = entry_module(model, spec)
    assert not model.training
    seq_lens = (5, 9) if spec.takes_sequences else (None,)
    for batch in (1, 3):
        for seq in seq_lens:
            inputs = make_inputs(spec, cfg, batch, seq)
            for t, x in zip(spec.inputs, inputs, strict=True):
                assert str(x.dtype) == f"torch.{t.dtype}"
                if t.dtype == "int64":
                    assert int(x.min()) >= 0 and int(x.max()) < getattr(cfg, t.high) if isinstance(t.high, str) else True
            with torch.inference_mode():
                out = net(*inputs)
            outs = out if isinstance(out, tuple) else (out,)
            assert len(outs) == len(spec.outputs)
            used_seq = inputs[0].shape[1] if spec.takes_sequences else 0
            for t, y in zip(spec.outputs, outs, strict=True):
                assert tuple(y.shape) == resolve_dims(t.shape, cfg, batch, used_seq), t.name
                assert torch.isfinite(y).all(), f"{spec.name}.{t.name} has NaN/Inf"


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_default_size_builds_and_runs(spec) -> None:
    """The articles' default sizes (ViT-B/16, ResNet-18 at 224 included) build and run at batch 1."""
    cfg = make_model_config(spec)
    net = entry_module(create_model(spec, cfg), spec)
    with torch.inference_mode():
        out = net(*make_inputs(spec, cfg, 1))
    outs = out if isinstance(out, tuple) else (out,)
    assert all(torch.isfinite(y).all() for y in outs)


def test_resnet18_matches_torchvision_topology() -> None:
    import torchvision

    ours = create_model(get_spec("resnet18"), make_model_config(get_spec("resnet18")))
    ref = torchvision.models.resnet18(weights=None)
    assert [tuple(p.shape) for p in ours.state_dict().values()] == [tuple(p.shape) for p in ref.state_dict().values()]
    assert list(ours.state_dict()) == list(ref.state_dict())  # same names: torchvision weights load as they are


def test_vit_is_vit_b16_sized() -> None:
    spec = get_spec("vit")
    model = create_model(spec, make_model_config(spec))
    assert sum(p.numel() for p in model.parameters()) == 86_567_656  # ViT-B/16, 1000 classes


def test_variant_sizes_from_the_articles() -> None:
    spec = get_spec("mlp")
    cfg = make_model_config(spec, {"in_features": "784", "hidden_sizes": "[512, 256, 128]", "num_classes": "10",
                                   "dropout": "0.3"})
    model = create_model(spec, cfg)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 512), (512, 256), (256, 128), (128, 10)]


def test_multi_network_models_declare_their_entry() -> None:
    gan = get_spec("gan")
    model = create_model(gan, make_model_config(gan, tiny=True))
    assert entry_module(model, gan) is model.generator
    assert hasattr(model, "discriminator")


def test_seq2seq_gru_decodes_max_length_steps() -> None:
    spec = get_spec("seq2seq_gru")
    cfg = make_model_config(spec, {"max_length": "7"}, tiny=True)
    out = create_model(spec, cfg)(*make_inputs(spec, cfg, 2, 4))
    assert out.shape == (2, 7, cfg.output_size)


def test_transformer_classifier_ignores_padding() -> None:
    spec = get_spec("transformer_classifier")
    cfg = make_model_config(spec, {"dropout": "0.0"}, tiny=True)
    model = create_model(spec, cfg)
    (tokens,) = make_inputs(spec, cfg, 2, 6)
    padded = torch.cat([tokens, torch.zeros(2, 3, dtype=torch.long)], dim=1)  # pad id 0 appended
    with torch.inference_mode():
        assert torch.allclose(model(tokens), model(padded), atol=1e-5)
