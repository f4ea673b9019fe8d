"""Pruning over the registry: every spec that declares a method prunes, runs, round-trips through save and load,
and exports (ONNX, verified against the pruned eager model); the others refuse with the spec's reason."""

from __future__ import annotations

import pytest
import torch

from dlopt.core.errors import ConfigError, UnsupportedError
from dlopt.export import ExportConfig, export_model
from dlopt.models.checkpoint import load_checkpoint, save_checkpoint
from dlopt.models.registry import create_model, entry_module, list_specs, make_inputs, make_model_config
from dlopt.models.spec import ExportFormat
from dlopt.models.structure import describe
from dlopt.prune import PruneConfig
from dlopt.prune.model import prune_model

SPECS = list_specs()
STRUCTURED = [s for s in SPECS if s.supports("prune:structured")]
UNSTRUCTURED = [s for s in SPECS if s.supports("prune:unstructured")]
NOT_STRUCTURED = [s for s in SPECS if not s.supports("prune:structured")]
RATIO = 0.5  # tiny configs have 2 heads and 4..16 channels: 0.5 removes something everywhere


def _build(spec):
    cfg = make_model_config(spec, tiny=True)
    torch.manual_seed(0)
    return create_model(spec, cfg), cfg


def _outputs(module, inputs):
    with torch.no_grad():
        out = module(*inputs)
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("spec", STRUCTURED, ids=lambda s: s.name)
def test_structured_prunes_runs_round_trips_and_exports(spec, tmp_path):
    model, cfg = _build(spec)
    example = make_inputs(spec, cfg, 1)
    pruned, info = prune_model(model, spec, PruneConfig(ratio=RATIO), example)
    assert info["params"]["after"] < info["params"]["before"]
    assert info["macs"]["after"] < info["macs"]["before"]
    assert sum(p.numel() for p in model.parameters()) > sum(p.numel() for p in pruned.parameters())  # a copy
    inputs = make_inputs(spec, cfg, 3, seed=1)
    ref, got = _outputs(entry_module(model, spec), inputs), _outputs(entry_module(pruned, spec), inputs)
    assert [o.shape for o in got] == [o.shape for o in ref]  # the output layers keep their size
    record = save_checkpoint(pruned, spec, cfg, tmp_path / "pruned" / "model.json",
                             extra={"structure": describe(pruned, create_model(spec, cfg))})
    loaded = load_checkpoint(record).model
    assert {k: v.shape for k, v in loaded.state_dict().items()} == {k: v.shape for k, v in pruned.state_dict().items()}
    for a, b in zip(_outputs(entry_module(loaded, spec), inputs), got, strict=True):
        torch.testing.assert_close(a, b)
    onnx_only = ExportConfig(formats=(ExportFormat.ONNX,), exporter="legacy")
    res = export_model(loaded, spec, cfg, tmp_path / "export", onnx_only)
    assert res.passed and "onnx" in res.artifacts, res.to_dict()


@pytest.mark.parametrize("spec", NOT_STRUCTURED, ids=lambda s: s.name)
def test_structured_unsupported_gives_the_specs_reason(spec):
    model, cfg = _build(spec)
    with pytest.raises(UnsupportedError, match="cannot be pruned") as err:
        prune_model(model, spec, PruneConfig(ratio=0.3), make_inputs(spec, cfg, 1))
    assert spec.why_not("prune:structured") in str(err.value)


@pytest.mark.parametrize("spec", UNSTRUCTURED, ids=lambda s: s.name)
def test_unstructured_reaches_the_sparsity_and_keeps_shapes(spec):
    model, cfg = _build(spec)
    pruned, info = prune_model(model, spec, PruneConfig(ratio=0.4, method="unstructured"), make_inputs(spec, cfg, 1))
    assert 0.4 <= info["sparsity"]["weights"] < 0.45
    assert info["params"]["after"] == info["params"]["before"]
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in pruned.state_dict().items()}
    inputs = make_inputs(spec, cfg, 2, seed=1)
    assert all(torch.isfinite(o.float()).all() for o in _outputs(entry_module(pruned, spec), inputs))


def test_round_to_keeps_multiples_and_refuses_emptying_a_layer():
    spec = next(s for s in SPECS if s.name == "resnet18")
    model, cfg = _build(spec)
    example = make_inputs(spec, cfg, 1)
    pruned, info = prune_model(model, spec, PruneConfig(ratio=0.3, round_to=2), example)
    outs = [w["out"] for n, w in info["widths"]["after"].items() if "conv" in n]
    assert all(o % 2 == 0 for o in outs) and info["params"]["after"] < info["params"]["before"]
    with pytest.raises(ConfigError, match="round-to"):
        prune_model(model, spec, PruneConfig(ratio=0.3, round_to=8), example)  # tiny widths 4..16: 4 * 0.7 -> 0


def test_a_model_with_nothing_prunable_is_refused(tmp_path):
    from dlopt.models.registry import get_spec

    (tmp_path / "one_layer.py").write_text("from torch import nn\n\ndef build():\n    return nn.Linear(4, 3)\n")
    spec = get_spec(f"{tmp_path / 'one_layer.py'}:build")
    cfg = make_model_config(spec, input_shape=(4,))
    with pytest.raises(UnsupportedError, match="nothing to prune"):
        prune_model(create_model(spec, cfg), spec, PruneConfig(ratio=0.3), make_inputs(spec, cfg, 1))
