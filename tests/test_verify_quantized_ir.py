"""`dlopt verify FILE` on an OpenVINO IR that dlopt quantize made judges it as a quantized file (top-1 agreement /
relative error), as it does an int8 ONNX file, instead of failing it elementwise; a plain fp32 IR stays elementwise."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app

pytest.importorskip("nncf")


def test_an_openvino_int8_file_verifies_by_its_task_criterion(tmp_path):
    from dlopt.contract.target import TargetOptions
    from dlopt.quantize import QuantizeConfig, run_quantize
    from dlopt.runtime.loader import read_metadata
    from dlopt.verify.criteria import for_artifact

    q = run_quantize(TargetOptions(name="cnn", root=tmp_path, tiny=True),
                     QuantizeConfig(method="static", backend="openvino", exporter="legacy", timing_budget_s=0.05,
                                    max_drop=100.0, min_agreement=0.0, max_rel_error=10.0))
    assert q.artifact.suffix == ".xml" and "quantization" in read_metadata(q.artifact)
    out = CliRunner().invoke(app, ["verify", str(q.artifact), "--json"])
    report = json.loads(out.stdout)
    criteria = {a["criterion"] for a in report["artifacts"].values()}
    assert all("agreement" in c or "relative" in c for c in criteria), criteria
    assert for_artifact("classification", {}) is None  # an fp32 file: elementwise


def test_diagnose_gives_a_bf16_marked_ir_the_half_precision_tolerance(tmp_path):
    import openvino as ov
    import torch

    from dlopt.runtime.openvino import convert_onnx, mark_ir
    from dlopt.verify.diagnose import _kind

    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    torch.onnx.export(module, (torch.randn(1, 3, 8, 8),), str(tmp_path / "m.onnx"), dynamo=False)
    fp32 = convert_onnx(tmp_path / "m.onnx", tmp_path / "fp32" / "model.xml")
    bf16 = mark_ir(fp32, tmp_path / "bf16" / "model.xml", "bf16")
    core = ov.Core()
    assert (_kind(fp32, core.read_model(str(fp32))), _kind(bf16, core.read_model(str(bf16)))) == ("fp32", "fp16")
