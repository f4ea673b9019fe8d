"""`dlopt pipeline` with `optimize` in place of its prune/quantize steps (an opt-in stage of the contract's table)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.core.runs import Run


def test_the_section_is_checked_like_the_command():
    from dlopt.core.errors import UsageError
    from dlopt.pipeline import PipelineConfig, apply
    from dlopt.pipeline.config import stage_configs

    cfg = apply(PipelineConfig(arch="mlp"), {"stages": ["optimize", "train"], "optimize": {"target_speedup": 2.0}})
    assert cfg.stages == ("train", "optimize")
    assert stage_configs(cfg)["optimize"].optimize_config().goal.kind == "speedup"
    with pytest.raises(UsageError, match="two goals"):
        stage_configs(apply(PipelineConfig(arch="mlp"), {"optimize": {"target_speedup": 2.0, "max_size_mb": 1.0}}))


def test_pipeline_runs_optimize_then_exports_and_reports_its_pick(tmp_path: Path):
    toml = tmp_path / "pipeline.toml"
    toml.write_text('stages = ["train", "optimize", "export"]\n[train]\nepochs = 3\n[optimize]\ntrials = 2\n'
                    'runtimes = ["onnxruntime"]\nthreads = [1]\nfinetune_epochs = 1\n')
    res = CliRunner().invoke(app, ["pipeline", "mlp", "--tiny", "--config", str(toml), "--out", str(tmp_path / "a"),
                                   "--json"])
    assert res.exit_code == 0, res.output
    run = Run.open(next((tmp_path / "a" / "mlp").iterdir()))
    stages = run.manifest()["stages"]
    assert stages["optimize"]["status"] == "done" and stages["optimize"]["metrics"]["reached"] is True
    assert "pruned" not in stages and "int8" not in stages  # optimize did the prune/quantize part
    shipped = json.loads((run.path / "optimized" / "optimize_report.json").read_text())["shipped"]
    assert shipped and run.artifact_status(run.path / shipped[0]).trusted
    steps = {s["name"]: s["status"] for s in json.loads(res.stdout)["steps"]}
    assert steps["optimize"] == "ran" and steps["export"] == "ran"
