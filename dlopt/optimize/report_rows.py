"""The study's trials as plain rows for optimize_report.json, the CLI table and the report section."""

from __future__ import annotations

from collections import Counter
from typing import Any

from dlopt.optimize.pick import pareto


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """Every trial, finished or not: its candidate and figures (the label says which layers its quantizer kept in
    float), or why it failed; who ran it."""
    from dlopt.optimize.study import STALE

    rows, said = [], study.user_attrs  # a trial failed for a silent heartbeat: its reason is the study's
    for t in study.get_trials(deepcopy=False):
        r = t.user_attrs.get("result") or {}
        worker = t.user_attrs.get("worker") or {}
        cand = t.user_attrs.get("candidate") or r.get("candidate") or {}
        constraints = t.constraints
        rows.append({
            "number": t.number, "state": t.state.name.lower(), "label": r.get("label") or _label(cand),
            "candidate": cand, "p50_ms": r.get("p50_ms"), "drop": (r.get("verdict") or {}).get("drop"),
            "metric": (r.get("verdict") or {}).get("metric"), "agreement": (r.get("verdict") or {}).get("agreement"),
            "kept_float": (r.get("quantized") or {}).get("kept_float"),
            "size_bytes": r.get("size_bytes"), "speedup_vs_eager": r.get("speedup_vs_eager"),
            "speedup_vs_runtime_fp32": r.get("speedup_vs_runtime_fp32"),
            "runtime_reference": r.get("runtime_reference"), "artifact": r.get("artifact"),
            "feasible": None if not constraints else all(c <= 0 for c in constraints.values()),
            "failed_because": t.user_attrs.get("failed_because") or said.get(f"{STALE}{t.number}"),
            "host": worker.get("host"),
            "pid": worker.get("pid")})
    return rows


def _label(cand: dict[str, Any]) -> str:
    from dlopt.optimize.space import Candidate

    return Candidate.of_row(cand).label if cand else "-"


def study_counts(study: Any) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name.lower() for t in trials)
    workers = sorted({f"{(t.user_attrs.get('worker') or {}).get('host')}:{(t.user_attrs.get('worker') or {}).get('pid')}"
                      for t in trials})
    return {"trials": len(trials), **{s: states.get(s, 0) for s in ("complete", "fail", "running")},
            "workers": workers}


def front_numbers(done: list[Any]) -> list[int]:
    rows = [(t.number, t.user_attrs["result"]) for t in done if "result" in t.user_attrs]
    return [n for n, _ in pareto(rows)]
