"""`--method auto` measures OpenVINO (NNCF) and ONNX Runtime together, says when it could not, and counts the
layers a dynamic-int8 conv net keeps in float from the written graph."""

from __future__ import annotations

import json
import sys

import onnx
import pytest
import torch.nn as nn

from dlopt.contract.target import TargetOptions
from dlopt.quantize import QuantizeConfig, run_quantize

FAST = dict(exporter="legacy", max_drop=100.0, max_fallback_layers=0, timing_budget_s=0.05, calibration_samples=32,
            min_agreement=0.0, max_rel_error=10.0)


def _auto(root, **kw):
    return run_quantize(TargetOptions(name="cnn", root=root, tiny=True), QuantizeConfig(**{**FAST, **kw}))


def test_auto_measures_openvino_and_onnxruntime_together(out_root):
    q = _auto(out_root)
    auto = q.result["auto"]
    rows = [c for c in auto["candidates"] if "failed" not in c]
    assert {c["backend"] for c in rows} == {"onnxruntime", "openvino"}, auto["candidates"]
    assert auto["backends"] == ["onnxruntime", "openvino"] and "together" in auto["backends_note"]
    for c in rows:
        assert c["latency_ms_b1"] > 0 and c["val_drop"] is not None and c["layers_int8"] >= 1, c
    chosen = [c for c in rows if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["latency_ms_b1"] == min(c["latency_ms_b1"] for c in rows)
    assert auto["why"].startswith(chosen[0]["recipe"])
    assert q.result["backend"] == chosen[0]["backend"]
    assert q.artifact.suffix == (".xml" if chosen[0]["backend"] == "openvino" else ".onnx")
    saved = json.loads(q.report_path.read_text())["auto"]["candidates"]
    assert {c["backend"] for c in saved if "failed" not in c} == {"onnxruntime", "openvino"}


def test_auto_without_openvino_measures_onnxruntime_and_says_why(out_root, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now fails, as when it is not installed
    monkeypatch.setitem(sys.modules, "nncf", None)
    q = _auto(out_root)
    auto = q.result["auto"]
    assert {c["backend"] for c in auto["candidates"] if "failed" not in c} == {"onnxruntime"}
    assert not [c for c in auto["candidates"] if "failed" in c], auto["candidates"]  # not tried, not failed
    assert auto["backends"] == ["onnxruntime"]
    assert "OpenVINO not measured" in auto["backends_note"] and "not installed" in auto["backends_note"]
    assert any("OpenVINO not measured" in n for n in q.result["notes"])


def test_dynamic_int8_conv_net_counts_int8_and_float_layers_from_the_graph(out_root):
    q = run_quantize(TargetOptions(name="cnn", root=out_root, tiny=True),
                     QuantizeConfig(**{**FAST, "method": "dynamic", "backend": "onnxruntime",
                                       "auto_backends": ("onnxruntime",)}))
    r = q.result
    from dlopt.models.checkpoint import load_checkpoint

    model = load_checkpoint(q.run_dir / "model.json").model
    linears = sum(isinstance(m, nn.Linear) for m in model.modules())
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert linears >= 1 and convs >= 1
    ops = [n.op_type for n in onnx.load(str(q.artifact)).graph.node]
    assert ops.count("MatMulInteger") == linears and ops.count("Conv") == convs  # the file itself
    assert r["layers_int8"] == linears and r["layers_float"] == convs, r
    assert len(r["float_layers"]) == convs and all("conv" in n.lower() for n in r["float_layers"])
    assert r["kept_float"] == [] and "Linear/MatMul/LSTM/attention layers only" in r["float_why"]
    saved = json.loads(q.report_path.read_text())
    assert saved["layers_float"] == convs and saved["layers_int8"] == linears


@pytest.fixture(scope="module")
def ov_int8_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ov-int8")
    q = run_quantize(TargetOptions(name="cnn", root=root, tiny=True),
                     QuantizeConfig(**{**FAST, "method": "static", "backend": "openvino"}))
    assert q.artifact.suffix == ".xml"
    return q.run_dir


def test_pipeline_evaluates_an_openvino_ir_variant(ov_int8_run):
    from dlopt.core.runs import Run
    from dlopt.models.registry import get_spec
    from dlopt.pipeline.evaluate import evaluate_variants

    out = evaluate_variants(Run(ov_int8_run), get_spec("cnn"))
    rows = {(r["variant"], r["runtime"]): r for r in out["rows"]}
    row = rows.get(("int8", "openvino"))
    assert row is not None, list(rows)
    assert row["error"] is None and 0.0 <= row["metrics"]["accuracy"] <= 1.0, row


def test_pipeline_bench_adds_openvino_when_the_run_has_an_ir(ov_int8_run):
    from dlopt.core.runs import Run
    from dlopt.models.registry import get_spec
    from dlopt.pipeline import PipelineConfig, apply
    from dlopt.pipeline.steps import Context, bench

    cfg = apply(PipelineConfig(arch="cnn", tiny=True),
                {"bench": {"backends": ["eager"], "batch_sizes": [1], "budget_s": 0.05, "threads": 1}})
    said: list[str] = []
    path = bench(Context(Run(ov_int8_run), cfg, get_spec("cnn"), said.append, show_bars=False))[0]
    rows = {r["variant"]: r for r in json.loads(path.read_text())["rows"]}
    ir = rows.get("openvino:int8/model.xml")
    assert ir is not None, list(rows)
    assert ir["status"] == "ok" and ir["precision"] == "int8" and ir["stats"]["median_ms"] > 0, ir
    assert any("openvino" in m for m in said), said


def test_auto_says_why_it_measured_one_backend_when_none_was_asked_for(monkeypatch):
    """No --backend, a model without data: OpenVINO's only int8 (static) needs calibration data. It said "measured
    onnxruntime only (the backend asked for)"."""
    from dlopt.quantize.choose import backends_note
    from dlopt.quantize.config import Method, QBackend
    from dlopt.quantize.recipe import Recipe

    monkeypatch.setattr("dlopt.quantize.choose.available", lambda asked: (asked, None))  # both installed
    both, ort = (QBackend.ONNXRUNTIME, QBackend.OPENVINO), [Recipe(QBackend.ONNXRUNTIME, Method.DYNAMIC)]
    timed = [{"backend": "onnxruntime", "recipe": "onnxruntime dynamic per-channel"}]
    no_data = backends_note(both, ort, [Recipe(QBackend.OPENVINO, Method.STATIC)], timed)
    assert "asked for" not in no_data and no_data.startswith("measured onnxruntime only: OpenVINO offers static")
    assert "--inputs FILE.npz" in no_data
    assert "OpenVINO offers no int8 method this model supports" in backends_note(both, ort, [], timed)
    assert "OpenVINO's recipes failed" in backends_note(both, [*ort, Recipe(QBackend.OPENVINO, Method.STATIC)], [],
                                                        timed + [{"recipe": "openvino static", "failed": "x"}])
    assert backends_note((QBackend.ONNXRUNTIME,), ort, [], timed) == "measured onnxruntime only (the backend asked for)"
