"""The quantize stage: every architecture's int8 path, each method and backend, the accuracy-aware fallback."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
import torch

from dlopt.contract.target import TargetOptions
from dlopt.core.errors import UnsupportedError
from dlopt.models.registry import get_spec, list_specs
from dlopt.quantize import QuantizeConfig, run_quantize
from dlopt.quantize.accuracy import fallback
from dlopt.quantize.config import Method, QBackend
from dlopt.quantize.recipe import Built, Recipe
from dlopt.quantize.torch_quant import bf16_supported
from dlopt.verify.criteria import FiniteOutputs, MetricChange, RelativeError, task_criterion

# Tiny, untrained models: accuracy thresholds mean little here (the zoo benchmark checks trained models), so the
# budget is open and the fallback off; what must hold is that an int8 file is made, runs and passes the sweep.
FAST = dict(exporter="legacy", max_drop=100.0, max_fallback_layers=0, timing_budget_s=0.05, calibration_samples=32,
            min_agreement=0.0, max_rel_error=10.0)
INT8_OPS = {"QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger",
            "DynamicQuantizeLSTM", "ConvInteger"}


def _quantize(name: str, root: Path, **kw) -> object:
    return run_quantize(TargetOptions(name=name, root=root, tiny=True), QuantizeConfig(**{**FAST, **kw}))


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("spec", list_specs(), ids=lambda s: s.name)
def test_every_architecture_has_a_working_int8_path(spec, out_root):
    method = next((m for m in (Method.DYNAMIC, Method.STATIC) if spec.supports(f"quantize:{m}")), None)
    if method is None:
        assert spec.why_not("quantize:dynamic") and spec.why_not("quantize:static")
        return
    outcome = _quantize(spec.name, out_root, method=method)
    r = outcome.result
    assert outcome.artifact == outcome.run_dir / "int8" / "model.onnx"
    assert _ops(outcome.artifact) & INT8_OPS, "no int8 operator in the file"
    assert r["layers_int8"] >= 1
    assert r["verification"]["shapes"]["passed"], r["verification"]["shapes"]["failures"]
    assert r["relative_error"] < 10.0 and r["latency_ms_b1"]["quantized"] > 0
    manifest = json.loads((outcome.run_dir / "manifest.json").read_text())
    assert manifest["stages"]["int8"]["status"] == "done"
    assert json.loads(outcome.report_path.read_text())["arch"] == spec.name


@pytest.mark.parametrize(("fmt", "op"), [("qdq", "QuantizeLinear"), ("qoperator", "QLinearConv")])
def test_ort_static_formats(fmt, op, out_root):
    r = _quantize("cnn", out_root, method="static", quant_format=fmt, per_channel=fmt == "qdq")
    assert op in _ops(r.artifact)
    assert r.result["calibration"]["samples"] == 32 and r.result["calibration"]["source"].startswith("train split")
    assert r.result["recipe"]["quant_format"] == fmt
    from dlopt.bench.variants import quantized_precision

    assert quantized_precision(r.artifact) == "int8"  # the bench stage labels the row int8


@pytest.mark.parametrize("calibration", ["entropy", "percentile"])
def test_calibration_methods(calibration, out_root):
    r = _quantize("mlp", out_root, method="static", calibration_method=calibration)
    assert "QuantizeLinear" in _ops(r.artifact) and r.result["calibration"]["method"] == calibration


def test_ort_dynamic_quantizes_the_lstm(out_root):
    r = _quantize("text_lstm", out_root, method="dynamic")
    assert "DynamicQuantizeLSTM" in _ops(r.artifact)


def test_ort_fp16_and_bf16(out_root):
    r = _quantize("mlp", out_root, method="fp16")
    init = onnx.load(str(r.artifact)).graph.initializer
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in init)
    assert r.result["verification"]["shapes"]["passed"]
    with pytest.raises(UnsupportedError, match="bfloat16"):
        _quantize("mlp", out_root, method="bf16")


@pytest.mark.parametrize(("arch", "method", "marker"), [("cnn", "static", "quantize_per_tensor"),
                                                        ("mlp", "dynamic", None), ("mlp", "fp16", None)])
def test_torch_backend(arch, method, marker, out_root):
    from dlopt.export import load_artifact

    r = _quantize(arch, out_root, method=method, backend="torch")
    assert r.artifact.suffix == ".pt2" and r.result["backend"] == "torch"
    run = load_artifact(r.artifact)  # trusted: the run's manifest records its sha256
    from dlopt.models.registry import make_inputs

    spec = get_spec(arch)
    ck = json.loads((r.run_dir / "model.json").read_text())
    assert ck["arch"] == arch
    out = run(*make_inputs(spec, _cfg(r.run_dir), 3))
    assert torch.isfinite(out[0]).all() and out[0].shape[0] == 3
    if marker:
        program = torch.export.load(str(r.artifact))
        assert any(marker in str(n.target) for n in program.graph.nodes)
        # a fresh process (dlopt bench, dlopt verify) has not imported torchao: the file must still load
        code = f"from dlopt.export import load_artifact; load_artifact({str(r.artifact)!r}); print('loaded')"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert "loaded" in done.stdout, done.stderr[-500:]


def _cfg(run_dir: Path):
    from dlopt.models.checkpoint import load_checkpoint

    return load_checkpoint(run_dir / "model.json").config


@pytest.mark.skipif(bf16_supported(), reason="this CPU has bf16 instructions")
def test_torch_bf16_refused_without_cpu_support(out_root):
    with pytest.raises(UnsupportedError, match="bf16 instructions"):
        _quantize("mlp", out_root, method="bf16", backend="torch")


@pytest.mark.skipif(not bf16_supported(), reason="this CPU lacks bf16 instructions (the refusal is tested instead)")
def test_torch_bf16_on_a_cpu_with_bf16(out_root):
    r = _quantize("mlp", out_root, method="bf16", backend="torch")
    assert r.artifact.suffix == ".pt2" and r.result["method"] == "bf16"
    assert r.result["verification"]["shapes"]["passed"]
    program = torch.export.load(str(r.artifact))
    assert any(p.dtype == torch.bfloat16 for p in program.state_dict.values())


def test_auto_measures_every_candidate(out_root):
    r = _quantize("cnn", out_root).result
    rows = [c for c in r["auto"]["candidates"] if "failed" not in c]
    assert {c["recipe"] for c in rows} >= {"onnxruntime static qdq per-channel", "onnxruntime dynamic per-channel"}
    assert sum(c["chosen"] for c in rows) == 1 and all(c["latency_ms_b1"] > 0 for c in rows)
    chosen = next(c for c in rows if c["chosen"])
    assert chosen["latency_ms_b1"] == min(c["latency_ms_b1"] for c in rows)  # all within the open budget
    assert "eager fp32" in r["auto"]["reference_latency_ms_b1"]


def test_variant_goes_to_its_own_stage(out_root):
    from dlopt.models.checkpoint import load_checkpoint, save_checkpoint

    first = _quantize("mlp", out_root, method="dynamic")
    ck = load_checkpoint(first.run_dir / "model.json")
    save_checkpoint(ck.model, ck.spec, ck.config, first.run_dir / "pruned" / "model.json")
    second = run_quantize(TargetOptions(name=str(first.run_dir), variant="pruned/model.json"),
                          QuantizeConfig(**{**FAST, "method": "dynamic", "name": "pruned-int8"}))
    assert second.artifact == first.run_dir / "pruned-int8" / "model.onnx"
    stages = json.loads((first.run_dir / "manifest.json").read_text())["stages"]
    assert stages["pruned-int8"]["inputs"][0]["path"] == "pruned/model.json" and "int8" in stages


def test_fallback_keeps_the_sensitive_layer_in_float(out_root):
    """A trained MLP whose first layer is rescaled (one neuron x1000, undone by its BatchNorm): per-tensor int8
    of that layer zeroes every other neuron. The search must find it and keep it in float."""
    from dlopt.models.checkpoint import load_checkpoint, save_checkpoint
    from dlopt.train.api import train
    from dlopt.train.config import TrainConfig

    res = train(TrainConfig(arch="mlp", out=out_root, tiny=True, epochs=3, progress=False))
    run = Path(res.run_dir)
    ck = load_checkpoint(run / "model.json")
    lin, bn = ck.model.features[0], ck.model.features[2]
    with torch.no_grad():
        lin.weight[0] *= 1000
        lin.bias[0] *= 1000
        bn.running_mean[0] *= 1000
        bn.running_var[0] *= 1e6
    save_checkpoint(ck.model, ck.spec, ck.config, run / "model.json")
    cfg = QuantizeConfig(method="static", per_channel=False, exporter="legacy", max_drop=1.0, timing_budget_s=0.05)
    r = run_quantize(TargetOptions(name=str(run)), cfg).result
    assert r["search"]["initial_drop"] > 1.0
    assert r["kept_float"], "the search kept nothing in float"
    assert r["search"]["ranking"][0]["layer"] in r["kept_float"]
    assert r["search"]["final_drop"] <= 1.0 and r["search"]["within_budget"]


def test_fallback_stops_with_the_best_it_found():
    """The search logic alone: layers a, b, c; only keeping b in float helps, and never enough."""
    drops = {(): 5.0, ("b",): 3.0}

    class FakeJudge:
        probe = [(torch.ones(1, 2),)]

        def loss(self, runner, split, before):
            return runner.drop

        def _reference(self, inputs):
            return [(torch.ones(1, 2),)]

    def build(recipe: Recipe, fast: bool) -> Built:
        key = tuple(sorted(recipe.keep_float))
        drop = drops.get(key, 4.0)

        def runner(*x):
            return (torch.ones(1, 2) * (1 + drop),)

        runner.drop = drop
        return Built(recipe, Path("x"), runner, tuple(n for n in "abc" if n not in key), key)

    base = build(Recipe(QBackend.ONNXRUNTIME, Method.STATIC), False)
    best, search = fallback(build, base, FakeJudge(), 0.9, 1.0, 1, 60.0, lambda _m: None)
    assert search.initial_drop == 5.0 and not search.within_budget
    assert len(search.attempts) == 1 and search.final_drop == min(a["drop"] for a in search.attempts)
    assert best.float_layers == tuple(search.attempts[0]["keep_float"])


def test_unsupported_method_is_refused_before_a_run(out_root):
    spec = get_spec("mlp")
    limited = replace(spec, quant_methods=frozenset({Method.DYNAMIC}), limits={"quantize:static": "reason here"})
    from dlopt.quantize.choose import recipes

    with pytest.raises(UnsupportedError, match="reason here"):
        recipes(limited, QuantizeConfig(method="static"), (QBackend.ONNXRUNTIME,))
    assert [str(r.method) for r in recipes(limited, QuantizeConfig(), (QBackend.ONNXRUNTIME,))] == ["dynamic"]


def test_task_level_criteria():
    ref = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert RelativeError(0.05).value(ref, ref * 1.01) == pytest.approx(0.01, rel=1e-4)
    from dlopt.verify.compare import compare

    stats = compare("y", ref, ref * 1.2, 1e-4)
    assert RelativeError(0.05).judge(stats, ref, ref * 1.2) and not RelativeError(0.5).judge(stats, ref, ref * 1.2)
    assert FiniteOutputs().judge(stats, ref, ref * 1.2) is None
    acc = MetricChange("accuracy", 1.0)
    assert acc.judge_metrics(0.95, 0.945) is None and acc.judge_metrics(0.95, 0.93)
    mse = MetricChange("mse", 1.0, higher_is_better=False, fraction=False)
    assert mse.judge_metrics(0.100, 0.1005) is None and mse.judge_metrics(0.100, 0.102)
    assert type(task_criterion("classification")).__name__ == "TopOneAgreement"
    assert isinstance(task_criterion("regression"), RelativeError)
