"""optimized/optimize_report.json: what the study tried, the re-timed finalists, the pick and why (a typed record,
written with dlopt.core.results.write_result so its keys are exactly these fields)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dlopt.core.records import Record

REPORT = "optimize_report.json"
SHIPPED = "optimized"  # <run>/optimized/: the picked file (with its companions) and this report


@dataclass(frozen=True)
class OptimizeReport(Record):
    arch: str
    goal: dict[str, Any] = field(default_factory=dict)  # dlopt.optimize.config.Goal, as asked
    config: dict[str, Any] = field(default_factory=dict)  # the whole OptimizeConfig
    study: dict[str, Any] = field(default_factory=dict)  # storage (no password), name, trial counts by state
    space: dict[str, Any] = field(default_factory=dict)  # ratios, formats, threads searched; choices left out, why
    basis: str = ""  # what the drop is judged on
    baseline: dict[str, Any] = field(default_factory=dict)  # fp32 eager: metric (and its name)
    search: dict[str, Any] = field(default_factory=dict)  # this process: trials run, seconds, killed trials marked
    trials: tuple[dict[str, Any], ...] = ()  # every trial of the study: state, candidate, figures or why it failed
    front: tuple[int, ...] = ()  # trial numbers on the latency/drop Pareto front (all finished trials)
    finalists: tuple[dict[str, Any], ...] = ()  # re-timed together on this machine before the pick
    pick: dict[str, Any] | None = None  # the finalist shipped (None: the goal was not reached)
    reached: bool = False
    reason: str = ""  # the rule that picked it, or what limited the search
    shipped: tuple[str, ...] = ()  # files written under optimized/, relative to the run
    verification: dict[str, Any] | None = None  # the pick's parity check (dlopt verify on its file)
    builds: dict[str, int] = field(default_factory=dict)  # passes this process ran (prune, export, quantize)
    fingerprint: dict[str, Any] = field(default_factory=dict)  # the picking machine
    seconds: float = 0.0
    notes: tuple[str, ...] = ()
