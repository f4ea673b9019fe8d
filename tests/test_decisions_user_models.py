"""`dlopt pipeline FILE.py:FN --input-shape ... [--inputs FILE.npz]` ends with a ship pick on a user's own models
(a CNN, a token Transformer with a padding mask, a two-input model): with no task metric the pick is judged by
agreement with fp32 and says so, and an int8 file that is not faster than the fp32 ONNX file is never the pick."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app

FIXTURES = Path(__file__).parent / "fixtures" / "user_models"
FAST = '''stages = ["quantize", "export", "verify", "bench"]
[export]
formats = ["onnx"]
exporter = "legacy"
[bench]
backends = ["eager", "onnxruntime"]
batch_sizes = [1]
threads = 1
budget_s = 2  # enough calls for a median whose IQR can be ranked, on a loaded machine too
'''


def _inputs(path: Path, model: str) -> Path:
    rng = np.random.default_rng(0)
    if model == "token_transformer":
        mask = np.zeros((64, 16), bool)
        mask[:, 12:] = rng.random((64, 4)) > 0.5  # padded tails: what random inputs never have
        np.savez(path, ids=rng.integers(1, 100, (64, 16)).astype(np.int64), mask=mask)
    elif model == "two_input":
        np.savez(path, image=rng.standard_normal((64, 3, 16, 16)).astype(np.float32),
                 features=rng.standard_normal((64, 8)).astype(np.float32))
    return path


CASES = {"cnn": ("3,32,32", False), "token_transformer": ("ids:int64:16:1-100,mask:bool:16", True),
         "two_input": ("image:float32:3x16x16,features:float32:8", True)}


@pytest.mark.parametrize("model", list(CASES))
def test_pipeline_on_a_user_model_ends_with_a_ship_pick(model: str, tmp_path: Path, monkeypatch) -> None:
    shape, with_inputs = CASES[model]
    shutil.copy(FIXTURES / f"{model}.py", tmp_path / f"{model}.py")
    (tmp_path / "fast.toml").write_text(FAST)
    monkeypatch.chdir(tmp_path)
    args = ["pipeline", f"{model}.py:build", "--input-shape", shape, "--config", "fast.toml", "--out", "out"]
    if with_inputs:
        args += ["--inputs", str(_inputs(tmp_path / "mine.npz", model))]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    runs = list((tmp_path / "out" / f"{model}-build").iterdir())  # named after the file's stem and function
    assert len(runs) == 1
    report = json.loads((runs[0] / "report.json").read_text())
    pick = report["ship"]["pick"]
    assert pick is not None, report["ship"]
    assert "ship:" in res.output and "no recommendation" not in res.output
    assert pick["drop"] is None and pick["judged_by"]  # no task metric: judged by agreement, and it says so
    rows = {r["label"]: r for r in report["rows"]}
    if pick["variant"] == "int8":  # only when int8 itself beats the fp32 file of its runtime
        fp32 = rows[f"fp32 / {pick['runtime']}"]["latency"]["1"]["p50"]
        assert fp32 / pick["p50_ms"] >= 1.1
    quant = json.loads((runs[0] / "int8" / "quantize_report.json").read_text())
    assert quant["fp32_reference"] == "onnxruntime fp32" and quant["speedup_vs_fp32_b1"] is not None
    if not quant["int8_worthwhile"]:
        assert quant["speedup_vs_fp32_b1"] < 1.1 and "ship the fp32 ONNX file" in quant["int8_verdict"]
    md = (runs[0] / "report.md").read_text()
    assert "test None" not in md and "test none" not in md and "no metric" in md
    if with_inputs:
        assert "mine.npz" in quant["accuracy_basis"]


def test_a_cnn_whose_int8_is_not_faster_is_not_shipped_as_int8(tmp_path: Path, monkeypatch) -> None:
    """The user's CNN: dynamic int8 converts 1 of 3 layers; it is not reported with a quantization speed-up and the
    ship pick is not the int8 file unless the bench measured it 1.1x faster than the fp32 ONNX file."""
    shutil.copy(FIXTURES / "cnn.py", tmp_path / "cnn.py")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["quantize", "cnn.py:build", "--input-shape", "3,32,32", "--out", "out", "--json"])
    assert res.exit_code == 0, res.output
    q = json.loads(res.stdout)
    assert q["layers_int8"] == 1 and q["layers_float"] == 2
    assert q["int8_worthwhile"] is False and q["speedup_vs_fp32_b1"] < 1.1, q["latency_ms_b1"]
    assert "int8 brings nothing here" in q["int8_verdict"] and "only 1 of 3 layers is int8" in q["int8_verdict"]
    assert q["auto"]["drop_column"].startswith("no metric")
