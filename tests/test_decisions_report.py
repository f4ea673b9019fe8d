"""The report's decisions a user can trust: without a task metric the pick is judged by agreement with fp32 (and
says so); an int8 file not 1.1x faster than the fp32 file of its runtime is never the pick; "no recommendation"
only when nothing was timed, with the command that would time it; numbers in report.json are numbers; the
markdown says "no metric"; the HTML tables scroll inside a box that fits 1280 px; the plot names every point."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dlopt.report.decide import banner, decide
from dlopt.report.render import CSS, html_page, markdown


def _row(variant: str, runtime: str, p50: float, parity: str = "", metric: float | None = None) -> dict:
    ext = {"eager": "json", "onnxruntime": "onnx"}.get(runtime, runtime)
    path = f"{'' if variant == 'fp32' else variant + '/'}model.{ext}"
    return {"variant": variant, "runtime": runtime, "label": f"{variant} / {runtime}", "path": path,
            "latency": {1: {"p50": p50, "p90": p50}}, "speedup": {1: 1.0 / p50}, "iqr": {1: 0.05}, "noisy": "",
            "parity": parity, "metric": metric, "metric_source": "", "size_bytes": None, "parameters": None,
            "macs": None, "pareto": False, "measured": {1: "2026-12-06T10:00:00+00:00"}, "threads": {1: 1}}


def _no_metric(*rows: dict, quant: dict | None = None) -> dict:
    return {"run": "/nonexistent", "arch": "cnn.py:build", "created": "", "pareto_batch": 1, "batches": [1],
            "metric": "none", "higher_is_better": True, "bench": {"threads": 1}, "rows": list(rows),
            "quantize": quant or {}, "steps": [], "environment": {}, "skipped": []}


INT8 = {"int8": {"artifact": "model.onnx", "verified": True, "top1_agreement": None, "relative_error": 0.004,
                 "accuracy_basis": "parity with fp32 on random valid inputs"}}


def test_without_a_metric_the_pick_is_judged_by_agreement_and_says_so() -> None:
    ship = decide(_no_metric(_row("fp32", "eager", 1.0), _row("fp32", "onnxruntime", 0.3, "pass (2e-07)"),
                             _row("int8", "onnxruntime", 0.1, "pass, rel. error 0.4%"), quant=INT8))
    assert ship["label"] == "int8 / onnxruntime" and ship["pick"]["drop"] is None
    assert "random valid inputs" in ship["pick"]["judged_by"] and "relative error 0.4%" in ship["pick"]["judged_by"]
    assert "no task metric, so judged by agreement with fp32" in ship["rule"]
    assert "no task metric: relative error" in banner(ship)


def test_int8_not_faster_than_the_fp32_file_of_its_runtime_is_never_the_pick() -> None:
    rows = (_row("fp32", "eager", 0.0811 * 3), _row("fp32", "onnxruntime", 0.0811, "pass (2e-07)"),
            _row("int8", "onnxruntime", 0.0800, "pass, rel. error 0.4%"))  # 1.01x: noise, not int8
    ship = decide(_no_metric(*rows, quant=INT8))
    assert ship["label"] == "fp32 / onnxruntime"
    why = {e["label"]: e["reason"] for e in ship["excluded"]}["int8 / onnxruntime"]
    assert why.startswith("int8 brings nothing here: 1.01x over fp32 / onnxruntime") and "(model.onnx)" in why
    with_metric = [dict(r, metric=0.9) for r in rows]  # the same rule with a task metric
    data = {**_no_metric(*with_metric), "metric": "accuracy"}
    assert decide(data)["label"] == "fp32 / onnxruntime"


def test_pruned_rows_without_a_metric_are_left_out_with_the_reason() -> None:
    ship = decide(_no_metric(_row("fp32", "eager", 1.0), _row("pruned", "eager", 0.5)))
    assert ship["label"] == "fp32 / eager"
    assert "changes what fp32 computes" in {e["label"]: e["reason"] for e in ship["excluded"]}["pruned / eager"]


def test_no_recommendation_only_when_nothing_was_timed_with_the_command() -> None:
    ship = decide({**_no_metric(), "pareto_batch": None})
    assert ship["pick"] is None and "nothing was benchmarked" in ship["rule"] and "dlopt bench RUN" in ship["rule"]


def test_report_json_numbers_are_numbers_and_markdown_says_no_metric() -> None:
    data = {**_no_metric(_row("fp32", "eager", 0.2, metric=0.95), _row("fp32", "onnxruntime", 0.1, "pass (1e-07)",
                                                                       0.945)), "metric": "accuracy"}
    data["ship"] = decide(data)
    pick = data["ship"]["pick"]
    assert pick["drop"] == pytest.approx(0.5) and pick["drop_unit"] == "points"
    assert json.loads(json.dumps(data["ship"]))["pick"]["drop"] == pytest.approx(0.5)
    assert "accuracy drop 0.50 points" in banner(data["ship"])
    bare = [dict(r, metric=None) for r in data["rows"]]
    md = markdown({**_no_metric(*bare), "ship": decide(_no_metric(*bare))}, {})
    assert "test None" not in md and "test none" not in md and "| no metric |" in md
    assert "measured 2026-12-06T10:00:00+00:00 (1 thread): fp32 / eager b1" in md


def test_html_tables_scroll_inside_a_box_that_fits_1280_px() -> None:
    data = _no_metric(_row("fp32", "eager", 1.0), _row("fp32", "onnxruntime", 0.3, "pass (2e-07)"))
    data["ship"] = decide(data)
    page = html_page(data, {})
    width = int(re.search(r"body\{[^}]*max-width:(\d+)px", CSS.replace("\n", "")).group(1))
    assert width <= 1280 - 32  # the page and its margins inside a 1280 px window
    assert ".scroll{overflow-x:auto" in CSS.replace("\n", "")
    assert page.count("<table>") == page.count("<div class=scroll><table>")  # every table scrolls in its box


def test_the_pareto_plot_shows_drops_in_points_with_every_point_labelled(tmp_path: Path, monkeypatch) -> None:
    import matplotlib.axes

    from dlopt.report.plots import pareto_plot

    named, limits = [], []
    real_annotate, real_ylim = matplotlib.axes.Axes.annotate, matplotlib.axes.Axes.set_ylim
    monkeypatch.setattr(matplotlib.axes.Axes, "annotate", lambda self, text, *a, **k: (named.append(text),
                                                                                        real_annotate(self, text, *a,
                                                                                                      **k))[1])
    monkeypatch.setattr(matplotlib.axes.Axes, "set_ylim", lambda self, *a, **k: (limits.append(a),
                                                                                  real_ylim(self, *a, **k))[1])
    rows = [_row("fp32", "eager", 1.0, metric=0.95), _row("fp32", "onnxruntime", 0.3, metric=0.95),
            _row("int8", "onnxruntime", 0.1, metric=0.944)]
    data = {**_no_metric(*rows), "metric": "accuracy"}
    data["ship"] = decide(data)
    assert pareto_plot(data, tmp_path / "p.png") is not None
    assert sorted(named) == sorted(r["label"] for r in rows)
    low, high = next(a for a in limits if len(a) == 2)
    assert low < 0 and high > 1.0 and high < 3  # 0 (fp32), the int8 drop 0.6 points and the 1-point budget
