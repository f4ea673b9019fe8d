"""OpenVINO as a runtime: IR export verified against eager, a damaged IR caught, thread/precision settings
applied, the bench backend (and its row when openvino is missing), NNCF int8."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import openvino  # noqa: E402,F401  a default dependency: missing it is a failed install, not a skip
import pytest
import torch

from dlopt.bench.backends import BackendUnavailable, Variant, prepare  # noqa: E402
from dlopt.bench.config import Backend, BenchConfig, Device  # noqa: E402
from dlopt.core.errors import InputFileError, InputMismatchError, UsageError  # noqa: E402
from dlopt.export import ExportConfig, export_model, load_artifact  # noqa: E402
from dlopt.models.registry import build_model, entry_module, make_inputs  # noqa: E402
from dlopt.models.spec import ExportFormat  # noqa: E402
from dlopt.runtime.openvino import compile_ir, ir_runner, quantize_ir, read_ir_metadata  # noqa: E402
from dlopt.verify import verify_artifacts  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple:
    """The tiny cnn exported to IR (legacy ONNX exporter: seconds, not tens of seconds)."""
    torch.manual_seed(0)
    model, spec, cfg = build_model("cnn", tiny=True)
    out = tmp_path_factory.mktemp("ov")
    result = export_model(model, spec, cfg, out, ExportConfig(formats=(ExportFormat.OPENVINO,), exporter="legacy"))
    return model, spec, cfg, result


def test_export_writes_ir_and_verifies_against_eager(exported):
    model, spec, cfg, result = exported
    assert not result.failures, result.failures
    xml = result.artifacts["openvino"]
    assert xml.suffix == ".xml" and xml.with_suffix(".bin").is_file()
    assert result.verification["openvino"].passed, result.verification["openvino"].failures()
    assert read_ir_metadata(xml)["arch"] == "cnn"
    x = make_inputs(spec, cfg, 3)
    with torch.no_grad():
        ref = entry_module(model, spec).eval()(*x)
    (out,) = load_artifact(xml, threads=1)(*x)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_damaged_weights_fail_verification(exported, tmp_path):
    model, spec, cfg, result = exported
    xml = result.artifacts["openvino"]
    bad_xml = tmp_path / "model.xml"
    bad_xml.write_bytes(xml.read_bytes())
    weights = np.fromfile(xml.with_suffix(".bin"), dtype=np.uint8).copy()
    consts = re.findall(r'element_type="f32"[^>]*?offset="(\d+)"[^>]*?size="(\d+)"', xml.read_text())
    assert consts
    for offset, size in consts:  # every fp32 constant (weights, biases) nudged: a different model, same graph
        weights[int(offset): int(offset) + int(size)].view(np.float32)[:] += np.float32(0.05)
    weights.tofile(bad_xml.with_suffix(".bin"))
    report = verify_artifacts(model, spec, cfg, {"openvino": bad_xml})["openvino"]
    assert not report.passed


def test_missing_weights_file_is_one_clear_error(exported, tmp_path):
    xml = exported[3].artifacts["openvino"]
    alone = tmp_path / "alone.xml"
    alone.write_bytes(xml.read_bytes())
    with pytest.raises(InputFileError, match=r"no weights file alone\.bin"):
        load_artifact(alone)


def test_threads_and_fp32_precision_are_applied(exported):
    xml = exported[3].artifacts["openvino"]
    for threads in (1, 2):  # one differs from the plugin's default on any machine
        assert int(compile_ir(xml, threads=threads).get_property("INFERENCE_NUM_THREADS")) == threads
    compiled = compile_ir(xml, threads=1)
    assert str(compiled.get_property("PERFORMANCE_HINT")) == "LATENCY"
    assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    for bad in (0, -1):
        with pytest.raises(UsageError, match="threads must be a positive integer"):
            ir_runner(xml, threads=bad)


def test_inputs_that_do_not_fit_are_named(exported):
    model, spec, cfg, result = exported
    run = ir_runner(result.artifacts["openvino"], threads=1)
    x = make_inputs(spec, cfg, 2)[0]
    with pytest.raises(InputMismatchError, match="float64, not float32"):
        run(x.double())
    with pytest.raises(InputMismatchError, match="has shape"):
        run(x[:, :, :-1])


def test_bench_backend_runs_module_and_ir(exported):
    model, spec, cfg, result = exported
    module = entry_module(model, spec).eval()
    inputs = make_inputs(spec, cfg, 2)
    with torch.no_grad():
        ref = module(*inputs).numpy()
    for v in (Variant("openvino", Backend.OPENVINO, module=module),
              Variant("openvino:model.xml", Backend.OPENVINO, path=result.artifacts["openvino"])):
        p = prepare(v, inputs, Device.CPU, threads=1)
        out = p.fn()
        np.testing.assert_allclose(out[0], ref, atol=1e-5, rtol=1e-4)
        assert p.setup_s > 0 and p.model_bytes > 0


def test_bench_row_is_ok(tmp_path):
    from dlopt.bench.runner import bench
    from dlopt.contract.target import TargetOptions

    cfg = BenchConfig(backends=(Backend.EAGER, Backend.OPENVINO), batch_sizes=(1,), budget_s=0.1, min_calls=5,
                      warmup_calls=1, threads=1)
    rows = {r["variant"]: r for r in bench(TargetOptions(name="mlp", tiny=True, root=tmp_path), cfg).result["rows"]}
    row = rows["openvino"]
    assert row["status"] == "ok", row
    assert row["stats"]["median_ms"] > 0 and row["first_call_s"] > 0 and row["setup_s"] > 0


def test_missing_openvino_makes_an_unavailable_row(monkeypatch, exported):
    model, spec, cfg, _ = exported
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    v = Variant("openvino", Backend.OPENVINO, module=entry_module(model, spec))
    with pytest.raises(BackendUnavailable, match=r"^unavailable: pip install openvino$"):
        prepare(v, make_inputs(spec, cfg, 1), Device.CPU, threads=1)


def test_nncf_int8_ir_is_quantized_and_close(exported, tmp_path):
    model, spec, cfg, result = exported
    calib = [make_inputs(spec, cfg, 1, seed=i) for i in range(8)]
    xml = quantize_ir(result.artifacts["openvino"], calib, tmp_path / "int8" / "model.xml", subset_size=8)
    import openvino as ov

    ops = {op.get_type_name() for op in ov.Core().read_model(str(xml)).get_ops()}
    assert "FakeQuantize" in ops  # int8: NNCF inserted quantizers
    x = make_inputs(spec, cfg, 4, seed=99)
    with torch.no_grad():
        ref = entry_module(model, spec).eval()(*x).numpy()
    out = ir_runner(xml, threads=1)(*x)[0]
    assert not np.allclose(out, ref, atol=1e-6)  # it is not the fp32 model
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 0.2


def test_cli_format_choices():
    from dlopt.cli.export_cmds import parse_formats

    assert parse_formats("openvino") == ((ExportFormat.OPENVINO,), True)
    assert ExportFormat.OPENVINO not in parse_formats("")[0]  # opt-in until the zoo is verified on it
    assert ExportFormat.OPENVINO in parse_formats("all")[0]


def test_cli_export_openvino_then_verify_run(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from dlopt.cli.app import app

    monkeypatch.chdir(tmp_path)  # a user's own directory, relative --out
    cli = CliRunner()
    res = cli.invoke(app, ["export", "mlp", "--tiny", "--format", "openvino", "--exporter", "legacy",
                           "--out", "runs", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    xml = Path(data["artifacts"]["openvino"])
    assert xml.suffix == ".xml" and xml.is_file() and xml.with_suffix(".bin").is_file()
    assert data["verification"]["openvino"]["passed"]
    outputs = json.loads((Path(data["run"]) / "manifest.json").read_text())["stages"]["export"]["outputs"]
    assert {"model.xml", "model.bin"} <= {o["path"] for o in outputs}  # the weights are vouched for too
    res = cli.invoke(app, ["verify", data["run"], "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["artifacts"]["openvino"]["passed"]


def test_export_with_onnx_converts_that_file(tmp_path):
    torch.manual_seed(0)
    model, spec, cfg = build_model("mlp", tiny=True)
    result = export_model(model, spec, cfg, tmp_path, ExportConfig(
        formats=(ExportFormat.ONNX, ExportFormat.OPENVINO), exporter="legacy"))
    assert not result.failures and result.passed, result.failures
    assert result.details["openvino"]["via"] == "model.onnx of this export"  # not a second ONNX export


def test_quantize_backend_openvino(tmp_path):
    import json

    import openvino as ov

    from dlopt.contract.target import TargetOptions
    from dlopt.quantize import QuantizeConfig, run_quantize

    q = run_quantize(TargetOptions(name="cnn", tiny=True, root=tmp_path),
                     QuantizeConfig(method="static", backend="openvino", calibration_samples=32))
    r = q.result
    assert q.artifact.suffix == ".xml" and q.artifact.with_suffix(".bin").is_file()
    assert r["backend"] == "openvino" and r["verified"], r
    assert r["layers_int8"] == 5 and r["kept_float"] == []  # cnn tiny: 3 convs + 2 linears, all int8
    assert r["size_bytes"]["quantized"] > q.artifact.stat().st_size  # the .bin counts
    ops = {op.get_type_name() for op in ov.Core().read_model(str(q.artifact)).get_ops()}
    assert "FakeQuantize" in ops
    outputs = json.loads((q.run_dir / "manifest.json").read_text())["stages"]["int8"]["outputs"]
    assert {"int8/model.xml", "int8/model.bin"} <= {o["path"] for o in outputs}


def test_openvino_keep_float_and_static_only(exported, tmp_path):
    from dlopt.core.errors import UnsupportedError
    from dlopt.quantize.config import Method, QBackend
    from dlopt.quantize.ov_quant import build
    from dlopt.quantize.recipe import Recipe

    model, spec, cfg, result = exported

    class Fp32:  # what ov_quant reads: the fp32 model file
        def raw(self) -> Path:
            return result.artifacts["openvino"]

    batches = [make_inputs(spec, cfg, 2, seed=i) for i in range(4)]
    full = build(Recipe(QBackend.OPENVINO, Method.STATIC), Fp32(), batches, tmp_path / "a" / "model.xml")
    assert full.float_layers == () and len(full.quantized_layers) == 5
    keep = full.quantized_layers[1]
    part = build(Recipe(QBackend.OPENVINO, Method.STATIC, keep_float=(keep,)), Fp32(), batches,
                 tmp_path / "b" / "model.xml")
    assert part.float_layers == (keep,) and keep not in part.quantized_layers
    with pytest.raises(UnsupportedError, match=r"static int8 \(NNCF\) or bf16, not dynamic"):
        build(Recipe(QBackend.OPENVINO, Method.DYNAMIC), Fp32(), batches, tmp_path / "c" / "model.xml")


def test_nncf_accuracy_control_restores_the_budget(tmp_path):
    """A trained MLP whose hidden activation has one channel x1000 (BatchNorm scaled up, the next Linear's weights
    scaled down: the same fp32 function). NNCF's per-tensor activation int8 of that Linear's input zeroes every
    other channel: plain NNCF int8 breaks the 1-point budget, accuracy control reverts that layer and meets it."""
    from dlopt.contract.target import TargetOptions
    from dlopt.models.checkpoint import load_checkpoint, save_checkpoint
    from dlopt.quantize import QuantizeConfig, run_quantize
    from dlopt.train.api import train
    from dlopt.train.config import TrainConfig

    run = Path(train(TrainConfig(arch="mlp", out=tmp_path, tiny=True, epochs=3, progress=False)).run_dir)
    ck = load_checkpoint(run / "model.json")
    bn = ck.model.features[2]
    nxt = [m for m in ck.model.features if isinstance(m, torch.nn.Linear)][1]
    with torch.no_grad():
        bn.weight[0] *= 1000
        bn.bias[0] *= 1000
        nxt.weight[:, 0] /= 1000
    save_checkpoint(ck.model, ck.spec, ck.config, run / "model.json")
    r = run_quantize(TargetOptions(name=str(run)), QuantizeConfig(
        method="static", backend="openvino", exporter="legacy", max_drop=1.0, timing_budget_s=0.05)).result
    s = r["search"]
    assert s["initial_drop"] > 1.0, s  # plain NNCF int8 broke the budget
    assert "NNCF accuracy control" in s["stopped"] and s["attempts"][0]["by"] == "nncf", s
    assert s["within_budget"] and s["final_drop"] <= 1.0 and r["drop_points"] <= 1.0, r
    assert s["margin"]["select"] < 1.0 and s["final_drop"] <= s["margin"]["select"], s  # the margin, as dlopt's own
    assert f"aiming at {s['margin']['select']:.3g}" in s["stopped"], s
    assert r["kept_float"] == [nxt_name(r)] and r["layers_float"] == 1 and r["layers_int8"] >= 1, r
    assert r["verified"] and any("reverted 1 layer" in n for n in r["notes"]), r


def nxt_name(r: dict) -> str:
    """The second Linear (features.4 in the tiny MLP) as the ONNX graph names it."""
    return next(n for n in r["float_layers"] if "features.4" in n)


def test_accuracy_control_applies_only_with_a_metric_and_openvino_static():
    from types import SimpleNamespace

    from dlopt.quantize.config import Method, QBackend
    from dlopt.quantize.ov_quant import controlled_applies
    from dlopt.quantize.recipe import Recipe

    def judge(uses_metric: bool, fraction: bool = True, higher: bool = True) -> SimpleNamespace:
        return SimpleNamespace(uses_metric=uses_metric, fraction=fraction, spec=SimpleNamespace(metric="mse"),
                               evaluator=SimpleNamespace(higher_is_better=higher))

    ov_static = Recipe(QBackend.OPENVINO, Method.STATIC)
    assert controlled_applies(judge(True), ov_static) is None
    assert controlled_applies(judge(True, fraction=False, higher=True), ov_static) is None
    assert "no task metric" in controlled_applies(judge(False), ov_static)
    assert "lower-is-better" in controlled_applies(judge(True, fraction=False, higher=False), ov_static)
    assert "not an OpenVINO" in controlled_applies(judge(True), Recipe(QBackend.ONNXRUNTIME, Method.STATIC))


def test_nncf_reads_onnx_through_the_frontend_simplifications(tmp_path):
    """An ONNX file is quantized as ov.convert_model reads it: depthwise weights are constants NNCF quantizes, and
    x * sigmoid(x) is one Swish. Core.read_model kept a shape subgraph before each depthwise weight (those convs
    stayed float) and the Sigmoid/Multiply pair apart (quantizers inside the activation): slower int8."""
    from torch import nn

    from dlopt.quantize.ov_quant import _quantized
    from dlopt.runtime.openvino import read_model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.SiLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                          nn.SiLU(), nn.Conv2d(8, 4, 1)).eval()
    path = tmp_path / "dw.onnx"
    torch.onnx.export(model, (torch.randn(2, 3, 16, 16),), str(path), input_names=["x"], dynamo=True,
                      dynamic_shapes={"input": {0: torch.export.Dim("batch")}})
    calib = [(torch.randn(1, 3, 16, 16),) for _ in range(4)]
    xml = quantize_ir(path, calib, tmp_path / "int8" / "model.xml", subset_size=4)
    q, kept = _quantized(read_model(xml))
    assert len(q) == 3 and kept == []  # the depthwise conv too
    ops = [op.get_type_name() for op in read_model(xml).get_ops()]
    assert ops.count("Swish") == 2 and "Sigmoid" not in ops and "ShapeOf" not in ops
