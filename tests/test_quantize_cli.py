"""`dlopt quantize` through the CLI: a success path, and bad input as one line with an exit code, no run left."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_quantize_json(out_root):
    res = _invoke("quantize", "mlp", "--tiny", "--method", "dynamic", "--max-drop", "100", "--exporter", "legacy",
                  "--out", out_root, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["method"] == "dynamic" and data["artifact"].endswith("int8/model.onnx")
    assert data["size_bytes"]["quantized"] > 0 and data["verified"] is True


@pytest.mark.parametrize(("args", "needle"), [
    (["--method", "int4"], "unknown --method 'int4'; choose one of auto, static, dynamic, fp16, bf16"),
    (["--calibration-samples", "0"], "--calibration-samples must be at least 1"),
    (["--calibration-method", "kl"], "unknown --calibration-method 'kl'"),
    (["--backend", "tensorrt"], "unknown --backend 'tensorrt'"),
    (["--format", "xyz"], "unknown --format 'xyz'"),
    (["--max-drop", "-1"], "--max-drop must be >= 0"),
])
def test_bad_options(args, needle, out_root):
    res = _invoke("quantize", "mlp", "--tiny", "--out", out_root, *args)
    assert res.exit_code == 2, res.output
    assert needle in " ".join(res.output.split()) and "Traceback" not in res.output
    assert not out_root.exists(), "a run directory was made for bad options"


def test_no_calibration_data(tmp_path, out_root):
    model = tmp_path / "user_model.py"
    model.write_text("import torch\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Linear(4, 3))\n")
    res = _invoke("quantize", f"{model}:build", "--input-shape", "4", "--method", "static", "--out", out_root)
    assert res.exit_code == 2, res.output
    assert "no calibration data" in res.output and "--method dynamic" in " ".join(res.output.split())


def test_unknown_architecture(out_root):
    res = _invoke("quantize", "resnet19", "--out", out_root)
    assert res.exit_code == 2 and "did you mean resnet18" in res.output


def test_a_head_that_does_not_match_the_data_has_no_metric_and_is_judged_by_agreement(tmp_path):
    """Issue 15: a 3-class head scored on digits' 10 classes gave an 'accuracy' about nothing (a torchvision
    model's 1000 classes gave '0 / 0'); quantize says there is no task metric and judges by top-1 agreement."""
    import json

    from typer.testing import CliRunner

    from dlopt.cli.app import app

    res = CliRunner().invoke(app, ["quantize", "lenet5", "--tiny", "--set", "num_classes=3", "--method", "dynamic",
                                   "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["metric_before"] is None and data["metric_after"] is None
    assert "head has 3 classes and the digits data has 10" in data["accuracy_basis"]
    assert data["top1_agreement"] is not None and any("no task metric" in n for n in data["notes"])
    matched = CliRunner().invoke(app, ["quantize", "lenet5", "--tiny", "--method", "dynamic",
                                       "--out", str(tmp_path / "m"), "--json"])
    assert matched.exit_code == 0 and json.loads(matched.stdout)["metric_before"] is not None  # 10 = 10: a metric
