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


def _outcome(monkeypatch, tmp_path, search: dict) -> None:
    """`dlopt quantize` returns the recorded report with its search record replaced by `search`."""
    from dataclasses import replace

    from dlopt.quantize.stage import QuantizeOutcome

    report = replace(read_result(QuantizeReport, RECORDED), search=search)
    outcome = QuantizeOutcome(stage="int8", run_dir=tmp_path, report_path=tmp_path / "int8" / RECORDED.name,
                              artifact=tmp_path / "int8" / "model.onnx", report=report)
    monkeypatch.setattr("dlopt.contract.target.resolve_target", lambda opts, check: None)
    monkeypatch.setattr("dlopt.quantize.run_quantize", lambda target, cfg, progress=None: outcome)


SLOW = {"int8_ms": 1.46, "fp32_ms": 1.09, "line": "ONNX Runtime profile, one thread, batch 1: int8 1.46 ms per run "
        "against fp32 1.09 ms: QuantizeLinear/DequantizeLinear add 0.21 ms over 40 nodes"}


def test_quantize_prints_why_int8_is_not_faster_without_a_repair(monkeypatch, tmp_path):
    _outcome(monkeypatch, tmp_path, {"initial_drop": 0.2, "within_budget": True, "stopped": "within budget",
                                     "slow_ops": SLOW})
    result = CliRunner().invoke(app, ["quantize", "mlp", "--tiny"], terminal_width=250)
    assert result.exit_code == 0, result.output
    assert "int8 not faster than fp32: " + SLOW["line"] in " ".join(result.output.split())
    assert "repair:" not in result.output


def test_quantize_prints_the_margin_that_turned_a_variant_down(monkeypatch, tmp_path):
    search = json.loads(RECORDED.read_text())["search"]
    rep = search["repair"]
    near = {**rep["attempts"][-1], "repair": "float fallback (onnxruntime): top 1", "val_drop": 0.5,
            "within_budget": True, "within_margin": False}
    margin = {"budget": 1.0, "points": 0.81, "select": 0.19, "rows": 150, "why": "a candidate must lose at most "
              "0.19 points on the validation split"}
    search["repair"] = {**rep, "attempts": [*rep["attempts"], near], "margin": margin, "slow_ops": SLOW}
    _outcome(monkeypatch, tmp_path, search)
    result = CliRunner().invoke(app, ["quantize", "mlp", "--tiny"], terminal_width=250)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "within budget, not its sampling margin" in out
    assert "repair sampling margin: a candidate must lose at most 0.19 points on the validation split" in out
    assert "repair int8 not faster than fp32: " + SLOW["line"] in out
