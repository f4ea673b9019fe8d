"""How benchmarks/tv_matrix_mixed.py counts a model toward the mixed-precision target: a verified file within
budget and faster than fp32, or dlopt naming the layers (or, for a slower file within budget, the operators) that
made it impossible; a count of layers is no name. And how --merge keeps the rows it does not rerun."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import tv_matrix_mixed  # noqa: E402
from tv_matrix_mixed import merged, put, score  # noqa: E402

OPS_LINE = ("int8 1.46 ms against fp32 1.09 ms at batch 1 on one thread; ONNX Runtime profile: "
            "QuantizeLinear/DequantizeLinear add 0.21 ms over 40 nodes")
FASTER = {"within_budget": True, "verified": True, "speedup_vs_fp32_b1": 1.3, "kept_float": ["node_Conv_7"],
          "repair": {"within_budget": True, "speed": "x + 1 layer(s) float: 1 ms against 2 ms"}, "status": "pass",
          "line": ""}


@pytest.mark.parametrize(("change", "counts", "why"), [
    ({}, True, "within_budget_and_faster"),
    ({"speedup_vs_fp32_b1": 0.9, "repair": {"within_budget": True, "speed": "x: the int8 file is not faster"}},
     True, "explained_by_dlopt"),
    ({"speedup_vs_fp32_b1": 0.9}, False, None),  # slower, and nothing said why
    ({"verified": False, "status": "fail", "line": "error: failed; 39 layer(s) were already kept in float"},
     False, None),  # held-out verification failed: a count of kept layers names none
    ({"verified": False, "status": "fail", "line": "error: failed; node_Conv_7 stays over budget"},
     True, "explained_by_dlopt"),
    ({"within_budget": False, "verified": False, "status": "fail", "repair": {"within_budget": False}},
     True, "explained_by_dlopt"),  # the repair gave up with its kept layers named in the report
    ({"within_budget": False, "verified": False, "status": "fail",
      "repair": {"within_budget": False, "stopped": "no repair met the budget before the search budget ran out"}},
     False, None),  # cut off by its time budget: nothing shown impossible
    ({"speedup_vs_fp32_b1": 0.75, "kept_float": [], "repair": None, "slow_ops_line": OPS_LINE},
     True, "explained_by_dlopt"),  # plain int8 within budget, slower: the profile names the operators
    ({"speedup_vs_fp32_b1": 0.75, "verified": False, "status": "fail", "kept_float": [], "repair": None,
      "slow_ops_line": OPS_LINE}, False, None),  # a file that failed verification is not explained by its speed
    ({"speedup_vs_fp32_b1": 0.75, "kept_float": [], "repair": None,
      "slow_ops_line": "int8 1 ms against fp32 0.9 ms: no operator kind costs notably more in int8"},
     False, None),  # a profile that names no operator says nothing
])
def test_score(change: dict, counts: bool, why: str | None) -> None:
    out = score({**FASTER, **change})
    assert out["counts"] is counts
    if why:
        assert out[why]


def _row(model: str, counts: bool) -> dict:
    return {"model": model, "counts": counts, "quantize": {**FASTER, "speedup_vs_fp32_b1": 1.3 if counts else 0.9,
                                                           "repair": {}, "kept_float": []}}


def test_merge_keeps_every_other_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = {"date": "2026-12-07T02:44:38+00:00", "environment": {"git_commit": "aaaaaaa"}, "input_size": 224,
           "requested": ["m1", "m2", "m3"], "results": [_row("m1", False), _row("m2", True), _row("m3", False)],
           "notes": ["about the old rows"], "summary": {"counted": 1}}
    new = {"date": "2026-12-07T06:00:00+00:00", "environment": {"git_commit": "bbbbbbb"}, "input_size": 224,
           "requested": ["m1", "m3"], "results": [], "why_not_run": "x", "runs": []}
    data = merged(json.loads(json.dumps(old)), new)
    data["runs"].append({"git_commit": "bbbbbbb", "requested": ["m1", "m3"], "measured": [], "notes": []})
    assert data["runs"][0]["notes"] == ["about the old rows"] and data["runs"][0]["git_commit"] == "aaaaaaa"
    put(data["results"], _row("m1", True) | {"measured_at_commit": "bbbbbbb"})
    data["runs"][-1]["measured"].append("m1")
    monkeypatch.setattr(tv_matrix_mixed, "OUT", tmp_path / "out.json")
    tv_matrix_mixed.write(data)
    out = json.loads((tmp_path / "out.json").read_text())
    assert [r["model"] for r in out["results"]] == ["m1", "m2", "m3"]  # in place, none dropped
    assert out["results"][0]["earlier"] == old["results"][0] | {"measured_at_commit": "aaaaaaa"}
    assert [r["measured_at_commit"] for r in out["results"]] == ["bbbbbbb", "aaaaaaa", "aaaaaaa"]
    assert out["summary"]["rows_by_commit"] == {"bbbbbbb": 1, "aaaaaaa": 2}
    assert out["summary"]["counted"] == 2 and out["summary"]["measured"] == 3
    assert list(out["not_run"]) == ["m3"] and "earlier row is kept" in out["not_run"]["m3"]


def test_merge_refuses_other_settings() -> None:
    old = {"environment": {"git_commit": "a"}, "search_budget_s": 90.0, "results": []}
    with pytest.raises(SystemExit, match="search_budget_s"):
        merged(old, {"search_budget_s": 300.0, "results": [], "runs": []})
