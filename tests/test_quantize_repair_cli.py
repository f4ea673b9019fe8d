"""`dlopt quantize` says what a repair did: each attempt and its drop, the layers kept out of int8 and why, the
speed cost and the verdict. The report is one a real repair wrote (a tiny MLP whose two hidden layers break
per-tensor int8), rendered by the CLI without quantizing again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.core.results import QuantizeReport, read_result

RECORDED = Path(__file__).parent / "fixtures" / "repaired_quantize_report.json"


@pytest.fixture
def recorded(monkeypatch, tmp_path):
    from dlopt.quantize.stage import QuantizeOutcome

    report = read_result(QuantizeReport, RECORDED)
    outcome = QuantizeOutcome(stage="int8", run_dir=tmp_path, report_path=tmp_path / "int8" / RECORDED.name,
                              artifact=tmp_path / "int8" / "model.onnx", report=report)
    monkeypatch.setattr("dlopt.contract.target.resolve_target", lambda opts, check: None)
    monkeypatch.setattr("dlopt.quantize.run_quantize", lambda target, cfg, progress=None: outcome)
    return report.search["repair"]


def test_quantize_prints_the_repair(recorded):
    result = CliRunner().invoke(app, ["quantize", "mlp", "--tiny"], terminal_width=200)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "repair: plain int8 was over budget (drop 32.67)" in out
    for attempt in recorded["attempts"]:
        assert attempt["repair"] in out
    assert "within budget (chosen)" in out and "skipped: ONNX Runtime's quantizer has no bias correction" in out
    for kept in recorded["kept"]:
        assert kept["layer"] in out and kept["why"] in out
    assert "repair speed cost:" in out and "0.82x the time" in out
    assert "repair within budget:" in out


def test_quantize_json_carries_the_repair(recorded):
    result = CliRunner().invoke(app, ["quantize", "mlp", "--tiny", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["search"]["repair"] == recorded


def test_the_search_and_repair_budget_is_an_option(monkeypatch, recorded):
    seen = []
    from dlopt.quantize import run_quantize as recorded_run

    monkeypatch.setattr("dlopt.quantize.run_quantize", lambda target, cfg, progress=None: (seen.append(cfg),
                                                                                            recorded_run(target, cfg))[1])
    result = CliRunner().invoke(app, ["quantize", "mlp", "--tiny", "--search-budget-s", "45"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert seen[0].search_budget_s == 45.0
    bad = CliRunner().invoke(app, ["quantize", "mlp", "--tiny", "--search-budget-s", "0"])
    assert bad.exit_code == 2
