"""`dlopt bench` of a run without a PyTorch model (`dlopt quantize model.onnx` made it): no eager row, so "vs eager"
says why it is empty, and the speed-ups are over the fp32 file on the same runtime, named in each row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from dlopt.cli.app import app

QUICK_BENCH = ("--batch-sizes", "1", "--iterations", "5", "--warmup", "1", "--backend", "onnxruntime")
NO_EAGER = "n/a: an ONNX file, no PyTorch model"


def _invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def onnx_run(tmp_path_factory) -> Path:
    """The run `dlopt quantize tiny.onnx` made (fp32 file outside it, int8 copy inside)."""
    folder = tmp_path_factory.mktemp("onnx-baseline")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 10)).eval()
    torch.onnx.export(model, (torch.randn(1, 3, 16, 16),), str(folder / "tiny.onnx"), dynamo=False,
                      input_names=["image"], output_names=["logits"], dynamic_axes={"image": {0: "n"}},
                      opset_version=17)
    made = _invoke("quantize", folder / "tiny.onnx", "--method", "static", "--backend", "onnxruntime", "--out",
                   folder / "runs", "--json")
    assert made.exit_code == 0, made.output
    return Path(json.loads(made.stdout)["run"])


def test_the_json_names_why_and_the_baseline_without_inventing_a_ratio(onnx_run: Path) -> None:
    result = _invoke("bench", onnx_run, *QUICK_BENCH, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rows = {r["variant"]: r for r in data["rows"]}
    assert set(rows) == {"onnxruntime:tiny.onnx", "onnxruntime:int8/model.onnx"}, rows
    assert data["no_eager"] == NO_EAGER
    assert all(r["speedup_vs_eager"] is None for r in rows.values())  # nothing made up for the missing eager row
    fp32, int8 = rows["onnxruntime:tiny.onnx"], rows["onnxruntime:int8/model.onnx"]
    assert fp32["baseline"] == int8["baseline"] == "onnxruntime:tiny.onnx"
    assert fp32["speedup_vs_baseline"] == 1.0
    ratio = fp32["stats"]["median_ms"] / int8["stats"]["median_ms"]
    assert int8["speedup_vs_baseline"] == pytest.approx(ratio, rel=1e-2)
    stored = json.loads((onnx_run / "bench.json").read_text())  # the file says it too, not only stdout
    assert stored["no_eager"] == NO_EAGER and {r.get("baseline") for r in stored["rows"]} == {fp32["variant"]}


def test_the_table_labels_the_column_and_says_why(onnx_run: Path) -> None:
    result = _invoke("bench", onnx_run, *QUICK_BENCH)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "vs fp32 file" in text and f"vs eager: {NO_EAGER}" in text
    assert "(onnxruntime:tiny.onnx)" in text
