"""`dlopt prune` reports its measured speed-up by default, cheaply: batch 1 on ONNX Runtime (eager where ONNX Runtime
cannot run or the model does not export), one thread, before and after interleaved for about a second. `--bench`
keeps the fuller table (tests/test_prune_stage.py); `--no-speedup` turns it off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.contract.target import TargetOptions
from dlopt.core.results import PruneReport
from dlopt.models.registry import get_spec
from dlopt.prune import latency, stage
from dlopt.prune.config import PruneConfig
from dlopt.prune.stage import run_prune


@pytest.fixture(autouse=True)
def _short(monkeypatch):
    monkeypatch.setattr(latency, "QUICK_BUDGET_S", 0.2)  # the default's second, shortened for the suite


def test_prune_measures_the_speedup_by_default(tmp_path: Path) -> None:
    out = run_prune(TargetOptions(name="mlp", tiny=True, root=tmp_path), PruneConfig(ratio=0.5, data_limit=64))
    lat = out.result["latency"]
    (key, row), = lat["rows"].items()
    assert key == "onnxruntime@b1" and row["before_ms"] > 0 and row["after_ms"] > 0
    assert row["speedup"] == pytest.approx(row["before_ms"] / row["after_ms"], rel=1e-2)
    assert lat["method"].startswith("on onnxruntime at batch 1, one thread, before and after interleaved")
    assert lat["problems"] == [] and out.summary["speedup_onnxruntime@b1"] == row["speedup"]
    assert json.loads(out.report_path.read_text())["latency"] == lat
    assert not (out.record.parent / "model.onnx").exists()  # the timed exports were temporary
    assert "pruned-latency" not in json.loads((out.run_dir / "manifest.json").read_text())["stages"]


def test_no_speedup_measures_nothing(tmp_path: Path) -> None:
    out = run_prune(TargetOptions(name="mlp", tiny=True, root=tmp_path),
                    PruneConfig(ratio=0.5, data_limit=64, speedup=False))
    assert "latency" not in out.result


def test_eager_when_onnx_runtime_cannot_run(monkeypatch) -> None:
    monkeypatch.setattr("dlopt.runtime.formats.why_not_here", lambda *_a: "onnxruntime is not installed")
    spec = get_spec("mlp")
    before = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    after = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    cfg = type("Cfg", (), {"in_features": 4})()
    monkeypatch.setattr("dlopt.models.registry.make_inputs", lambda *_a, **_k: (torch.randn(1, 4),))
    lat = latency.quick_speedup(before, after, spec, cfg)
    assert list(lat["rows"]) == ["eager@b1"] and lat["method"].startswith("on eager at batch 1")
    assert lat["problems"] == ["timed in eager: ONNX Runtime cannot run here (onnxruntime is not installed)"]


def test_a_model_of_a_tenth_of_a_second_per_call_still_gets_a_median(monkeypatch) -> None:
    """The budget grows to fit three calls of each model (a second would time none of a 2-second model)."""
    import time

    class Slow(torch.nn.Module):
        def forward(self, x):
            time.sleep(0.1)
            return x

    monkeypatch.setattr("dlopt.runtime.formats.why_not_here", lambda *_a: "not here")  # eager: no export needed
    monkeypatch.setattr("dlopt.models.registry.make_inputs", lambda *_a, **_k: (torch.randn(1, 4),))
    lat = latency.quick_speedup(Slow(), torch.nn.Identity(), get_spec("mlp"), None)
    assert lat["calls"]["before"] >= 3 and lat["calls"]["after"] >= 3 and lat["budget_s"] >= 0.45
    assert lat["rows"]["eager@b1"]["speedup"] > 10


def test_a_slower_quick_speedup_gets_the_note(tmp_path: Path, monkeypatch) -> None:
    slow = {"method": "on onnxruntime at batch 1", "rows": {"onnxruntime@b1": {"before_ms": 1.0, "after_ms": 1.25,
                                                                                 "speedup": 0.8}}, "problems": []}
    monkeypatch.setattr(latency, "quick_speedup", lambda *_a, **_k: slow)
    monkeypatch.setattr("dlopt.models.checkpoint.load_checkpoint", lambda _p: type("Ck", (), {"model": None})())
    target = type("T", (), {"model": None, "spec": None, "config": None})()
    report = stage._quick_speedup(target, tmp_path, PruneReport(arch="mlp"), lambda _m: None)
    assert report.latency == slow and "SLOWER" in report.notes[-1] and "onnxruntime@b1 0.80x" in report.notes[-1]


@pytest.mark.parametrize("flag", [[], ["--no-speedup"]])
def test_cli_says_how_the_speedup_was_measured(tmp_path: Path, flag: list[str]) -> None:
    res = CliRunner().invoke(app, ["prune", "mlp", "--tiny", "--ratio", "0.5", "--limit", "64", "--out",
                                   str(tmp_path), *flag], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    if flag:
        assert "speed-up not measured (--no-speedup)" in res.output and "onnxruntime@b1" not in res.output
    else:
        assert "onnxruntime@b1 ms" in res.output and "speed-up measured on onnxruntime at batch 1" in res.output
        assert "--bench times eager" in res.output
