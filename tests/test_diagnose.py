"""`dlopt diagnose`: the per-layer comparison names the layer where a file parts from its model -- a Conv whose
weights were changed in the file is the first layer flagged (dynamo and legacy exports, ONNX Runtime and
OpenVINO); an int8 file is read after its DequantizeLinear nodes; a file whose tensors cannot be mapped says so in
one line and still reports its outputs; bad input is one line and an exit code, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.verify.diagnose import DiagnoseOptions, diagnose_file

CHANGED = "layer2.0.conv1"  # the Conv whose weights the tests change in the file


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A seeded tiny resnet18 saved as a checkpoint, and its dynamo and legacy ONNX exports."""
    from dlopt.export.onnx import export_onnx
    from dlopt.models.checkpoint import save_checkpoint
    from dlopt.models.registry import build_model, make_inputs

    root = tmp_path_factory.mktemp("diag")
    torch.manual_seed(0)
    m, spec, cfg = build_model("resnet18", tiny=True)
    record = save_checkpoint(m.eval(), spec, cfg, root / "model.json")
    files = {}
    for exporter in ("dynamo", "legacy"):
        files[exporter] = root / f"{exporter}.onnx"
        export_onnx(m, make_inputs(spec, cfg, 2), spec, cfg, files[exporter], exporter=exporter)
    return record, files


def _changed(src: Path, dst: Path) -> Path:
    """A copy of `src` with the CHANGED Conv's weights scaled (x1.5) in the file only. The dynamo exporter names
    the weight after the module; the legacy one names the node after it (/layer2/layer2.0/conv1/Conv)."""
    proto = onnx.load(str(src))
    conv = next(n for n in proto.graph.node if n.op_type == "Conv" and (
        n.input[1] == f"{CHANGED}.weight" or n.name == "/layer2/layer2.0/conv1/Conv"))
    weight = next(t for t in proto.graph.initializer if t.name == conv.input[1])
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * np.float32(1.5), weight.name))
    onnx.save(proto, str(dst))
    return dst


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_first_layer_flagged_is_the_changed_conv(model, tmp_path, exporter):
    record, files = model
    clean = diagnose_file(DiagnoseOptions(record, files[exporter], samples=4)).report
    assert clean["rows"] and clean["first_flagged"] is None and clean["kind"] == "fp32"
    bad = _changed(files[exporter], tmp_path / "bad.onnx")
    report = diagnose_file(DiagnoseOptions(record, bad, samples=4)).report
    first = report["first_flagged"]
    assert first is not None and any(m.startswith(CHANGED) for m in first["modules"]), first
    before = report["rows"][:first["index"]]
    assert before and not any(r["flagged"] for r in before)


def test_openvino_ir_of_a_changed_file_flags_the_same_conv(model, tmp_path):
    from dlopt.runtime.openvino import convert_onnx

    record, files = model
    bad = _changed(files["dynamo"], tmp_path / "bad.onnx")
    xml = convert_onnx(bad, tmp_path / "bad.xml")
    report = diagnose_file(DiagnoseOptions(record, xml, samples=4)).report
    assert report["mapping"].startswith("a reference fp32 export")
    assert any(m.startswith(CHANGED) for m in report["first_flagged"]["modules"])


def test_int8_file_is_read_after_its_dequantize_nodes(model, tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static

    record, files = model

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"image": np.random.RandomState(i).randn(2, 3, 32, 32).astype(np.float32)}
                               for i in range(4)])

        def get_next(self):
            return next(self.items, None)

    q = tmp_path / "int8.onnx"
    quantize_static(str(files["dynamo"]), str(q), Reader(), per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, op_types_to_quantize=["Conv", "Gemm"])
    out = diagnose_file(DiagnoseOptions(record, q, samples=4))
    report = out.report
    assert report["kind"] == "int8" and report["tolerance"] == pytest.approx(0.1)
    assert any(r["quantized"] and r["tensor"].endswith("_DequantizeLinear_Output") for r in report["rows"])
    assert all(0 < r["rel_error"] < 1 for r in report["rows"])  # int8 noise, not a broken mapping
    assert out.plot_path is not None and out.plot_path.read_bytes()[:4] == b"\x89PNG"


def _unmappable(src: Path, dst: Path) -> Path:
    """Node metadata gone, every node and inner tensor renamed: nothing left to tell which module made what."""
    proto = onnx.load(str(src))
    keep = {i.name for i in proto.graph.input} | {o.name for o in proto.graph.output} | \
        {t.name for t in proto.graph.initializer}
    rename = {}
    for k, node in enumerate(proto.graph.node):
        del node.metadata_props[:]
        node.name = f"n{k}"
        for i, o in enumerate(node.output):
            if o not in keep:
                rename[o] = f"t{k}_{i}"
                node.output[i] = rename[o]
    for node in proto.graph.node:
        for i, x in enumerate(node.input):
            node.input[i] = rename.get(x, x)
    del proto.graph.value_info[:]
    onnx.save(proto, str(dst))
    return dst


def test_unmappable_file_says_so_in_one_line_and_reports_the_outputs(model, tmp_path):
    record, files = model
    odd = _unmappable(files["dynamo"], tmp_path / "odd.onnx")
    result = CliRunner().invoke(app, ["diagnose", str(record), str(odd), "--samples", "2"])
    assert result.exit_code == 0, result.output
    assert len([ln for ln in result.output.splitlines() if "could be mapped" in ln]) == 1
    assert "output 0" in result.output
    report = json.loads((tmp_path / "odd.layers.json").read_text())
    assert report["rows"] == [] and report["outputs"][0]["rel_error"] < 1e-4 and report["plot"] is None


@pytest.mark.parametrize(("args", "says"), [
    (["{record}", "{dir}/missing.onnx"], "not found"),
    (["{record}", "{dir}/junk.onnx"], "not a readable ONNX file"),
    (["{record}", "{dir}/model.safetensors"], "diagnose compares .onnx"),
    (["resnet18", "{onnx}"], "not a run directory or a checkpoint"),
])
def test_bad_input_is_one_line_and_an_exit_code(model, tmp_path, args, says):
    record, files = model
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    (tmp_path / "model.safetensors").write_bytes(b"x")
    before = set(tmp_path.iterdir()) | set(record.parent.iterdir())
    argv = [a.format(record=record, dir=tmp_path, onnx=files["legacy"]) for a in args]
    result = CliRunner().invoke(app, ["diagnose", *argv])
    assert result.exit_code != 0 and says in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1
    assert set(tmp_path.iterdir()) | set(record.parent.iterdir()) == before  # nothing created
