"""`dlopt report` shows what a run's other commands measured: each `dlopt diagnose` of a file of the run (its stage
`diagnose`: the per-layer plot and the worst layers), and every candidate a quantize stage built, with the fp32
references (an ONNX file's run has no eager baseline, and says so). A loose file's diagnose touches no run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app


def _ok(*args: object) -> Any:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny CNN trained one epoch on a few samples, exported to ONNX."""
    from dlopt.train import TrainConfig, train

    root = tmp_path_factory.mktemp("sections")
    result = train(TrainConfig(arch="cnn", tiny=True, epochs=1, limit=32, out=root, progress=False))
    _ok("export", result.run_dir, "--format", "onnx")
    return Path(result.run_dir)


def test_diagnose_is_a_stage_and_the_report_plots_it(run, tmp_path):
    run = Path(shutil.copytree(run, tmp_path / "run"))
    _ok("diagnose", run, run / "model.onnx", "--samples", "2", "--tolerance", "1e-12")  # every layer past it
    stage = json.loads((run / "manifest.json").read_text())["stages"]["diagnose"]
    assert stage["status"] == "done" and stage["metrics"]["first_flagged"]
    assert {o["path"] for o in stage["outputs"]} == {"diagnose/model.onnx.json", "diagnose/model.onnx.png"}
    _ok("report", run)
    page = (run / "report.html").read_text()
    section = page[page.index("<h2>Per-layer comparison</h2>"):]
    assert '<img alt="per-layer comparison of model.onnx" src="data:image/png;base64,' in section
    assert f"first layer past the tolerance 1e-12: {stage['metrics']['first_flagged']}" in section
    assert "Worst 8 layers" in section and "## Per-layer comparison" in (run / "report.md").read_text()


def test_a_loose_file_is_diagnosed_beside_itself_and_in_no_run(run, tmp_path):
    loose = Path(shutil.copy(run / "model.onnx", tmp_path / "loose.onnx"))
    before = (run / "manifest.json").read_bytes()
    _ok("diagnose", run, loose, "--samples", "2")
    assert (tmp_path / "loose.layers.json").is_file()
    assert (run / "manifest.json").read_bytes() == before and not (run / "diagnose").exists()


def test_report_of_an_onnx_file_run_lists_every_candidate(run, tmp_path):
    loose = Path(shutil.copy(run / "model.onnx", tmp_path / "tiny.onnx"))
    _ok("quantize", loose, "--out", tmp_path / "runs")
    [made] = list((tmp_path / "runs" / "onnx-tiny").iterdir())
    _ok("report", made)
    page = (made / "report.html").read_text()
    report = json.loads((made / "int8" / "quantize_report.json").read_text())
    section = page[page.index("<h2>Quantize candidates: int8</h2>"):]
    assert len(report["auto"]["candidates"]) >= 2
    for c in report["auto"]["candidates"]:
        assert f">{c['recipe']}</td>" in section
    refs = [k for k in report["latency_ms_b1"] if k.endswith(" fp32")]
    assert refs and all(f">{k}</td>" in section for k in refs)
    assert "an ONNX file: no PyTorch model, so no eager baseline" in section and "vs eager" not in section
