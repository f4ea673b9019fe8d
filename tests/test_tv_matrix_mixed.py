"""How benchmarks/tv_matrix_mixed.py counts a model toward the mixed-precision target: a verified file within
budget and faster than fp32, or dlopt naming the layers that made it impossible; a count of layers is no name."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from tv_matrix_mixed import score  # noqa: E402

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
])
def test_score(change: dict, counts: bool, why: str | None) -> None:
    out = score({**FASTER, **change})
    assert out["counts"] is counts
    if why:
        assert out[why]
