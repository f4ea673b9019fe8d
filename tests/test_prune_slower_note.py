"""Pruning never makes a model slower without the report (and the CLI) saying so."""

from __future__ import annotations

import json
from types import SimpleNamespace

from dlopt.core.results import PruneReport
from dlopt.prune import stage


def test_a_slower_pruned_model_gets_a_note(tmp_path, monkeypatch) -> None:
    rows = {"onnxruntime b8": {"before_ms": 10.0, "after_ms": 13.0, "speedup": 0.77},
            "eager b8": {"before_ms": 10.0, "after_ms": 5.0, "speedup": 2.0}}
    monkeypatch.setattr("dlopt.prune.latency.measure_latency",
                        lambda *a, **k: {"rows_by_variant": {"pruned": rows}, "problems": []})
    cfg, report = SimpleNamespace(name="pruned", bench_budget_s=0.1), PruneReport(arch="lenet5")
    target = SimpleNamespace(run=None, spec=None)
    (note,) = stage._bench(target, cfg, tmp_path, report, lambda _m: None).notes
    assert "SLOWER" in note and "onnxruntime b8 0.77x" in note and "eager" not in note
    assert json.loads((tmp_path / stage.REPORT).read_text())["notes"] == [note]


def test_a_faster_pruned_model_gets_no_such_note(tmp_path, monkeypatch) -> None:
    rows = {"onnxruntime b8": {"before_ms": 10.0, "after_ms": 5.0, "speedup": 2.0}}
    monkeypatch.setattr("dlopt.prune.latency.measure_latency",
                        lambda *a, **k: {"rows_by_variant": {"pruned": rows}, "problems": []})
    report = stage._bench(SimpleNamespace(run=None, spec=None), SimpleNamespace(name="pruned", bench_budget_s=0.1),
                          tmp_path, PruneReport(arch="lenet5"), lambda _m: None)
    assert not report.notes and json.loads((tmp_path / stage.REPORT).read_text())["latency"]["rows"] == rows
