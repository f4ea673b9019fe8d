"""Accuracy-aware quantization: when a candidate loses more than the budget, rank its layers by how much
keeping each one in float reduces the output error, then keep the top 1, 2, 4... in float until the drop
on the validation split is within budget, or stop with the best found.

"Within budget" during selection means within the budget less a sampling margin (`Margin`): the validation drop
is an estimate on n rows, and a candidate chosen at the very edge of the budget on it fails the held-out check on
the test split about half of the time (mnasnet0_5: 0.941 top-1 agreement on test after a val drop under 5 points).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dlopt.quantize.judge import Judge, relative_error, top1_matches
from dlopt.quantize.recipe import Built, Recipe

Builder = Callable[[Recipe, bool], Built]  # (recipe, fast) -> built; fast = a reduced calibration set
# Standard errors kept clear of the budget. One: a candidate at the selection edge then exceeds the budget on a fresh
# split of the same size about a quarter of the time instead of half; more would make a 1-point budget on a few
# hundred rows unreachable (the margin at 1 point on 270 rows is already 0.6 points).
MARGIN_Z = 1.0
# At most this share of the budget is held back: on a few hundred rows one standard error of a 1-point budget is
# 0.6 points, under one row's worth (0.39 on 256 rows), which would demand a lossless file and keep every layer in
# float (a ViT with 7 int8 layers ended with none); half the budget still leaves one row of slack there.
MAX_HELD_BACK = 0.5


@dataclass(frozen=True)
class Margin:
    """The selection budget: the accuracy budget less `z` binomial standard errors of a drop at the budget's rate
    on the `rows` the drop is measured on (never below zero: a candidate that lost nothing is always taken). No
    margin where the drop is no rate of rows (mse, relative error) or the judge has no sampling model."""

    budget: float  # points (the judge's unit)
    points: float  # subtracted from the budget while choosing
    rows: int | None  # rows the drop is a rate over; None: not a rate
    capped: bool = False  # the standard error was over MAX_HELD_BACK of the budget: that share is held back instead

    @property
    def select(self) -> float:
        return max(0.0, self.budget - self.points)

    def holds(self, drop: float | None) -> bool:
        return drop is None or drop <= self.select

    def text(self) -> str:
        if not self.points:
            return "no sampling margin (the drop is not a rate of rows)" if self.rows is None else \
                f"no sampling margin ({self.rows} rows)"
        held = (f"half the budget ({MARGIN_Z:g} standard error of a rate at the budget on {self.rows} rows is more)"
                if self.capped else f"{MARGIN_Z:g} standard error of a rate at the budget on {self.rows} rows")
        return (f"a candidate must lose at most {self.select:.3g} points on the validation split: the {self.budget:g}"
                f"-point budget less {self.points:.3g}, {held}, so that the held-out check does not fail on sampling "
                "noise")

    def to_json(self) -> dict[str, Any]:
        return {"budget": self.budget, "points": self.points, "select": round(self.select, 4), "rows": self.rows,
                "z": MARGIN_Z, "capped": self.capped, "why": self.text()}


def margin_for(judge: Any, budget: float) -> Margin:
    """The sampling margin for `budget` (points) on what `judge` measures drops on (call after a first `loss`: a
    metric that cannot run an artifact switches the judge to parity). A stand-in judge (tests) gets none."""
    rows = rate_rows(judge) if isinstance(judge, Judge) else None
    if not rows or budget <= 0.0 or budget >= 100.0:
        return Margin(budget, 0.0, rows)
    rate = min(budget / 100.0, 0.5)
    points = 100.0 * MARGIN_Z * math.sqrt(rate * (1.0 - rate) / rows)
    return Margin(budget, round(min(points, budget * MAX_HELD_BACK), 4), rows, points > budget * MAX_HELD_BACK)


def rate_rows(judge: Judge) -> int | None:
    """How many rows the search's drop is a rate over, so that its noise is a binomial's: the validation rows for a
    fraction metric (accuracy), the probe rows for top-1 disagreement with fp32; None when it is no rate (mse,
    relative error)."""
    if judge.uses_metric:
        split = getattr(judge.evaluator.data, "val", None) if judge.fraction else None
        return len(split) if split is not None and len(split) else None
    refs = judge._reference(judge.probe) if judge.by_agreement else []  # kept: the parity drop needs them anyway
    if not refs or top1_matches(refs[0][0], refs[0][0]) is None:
        return None
    return sum(int(r[0].shape[0]) for r in refs)


@dataclass
class Search:
    """What the accuracy-aware search did (for the report)."""

    initial_drop: float | None = None
    final_drop: float | None = None
    within_budget: bool = True
    ranking: list[dict[str, Any]] = field(default_factory=list)  # layer, error reduction
    attempts: list[dict[str, Any]] = field(default_factory=list)  # kept in float, drop
    stopped: str = ""
    seconds: float = 0.0
    repair: dict[str, Any] | None = None  # dlopt.quantize.mixed's repair, when this search ended over budget
    margin: dict[str, Any] | None = None  # the sampling margin the candidates were chosen with (Margin.to_json)
    slow_ops: dict[str, Any] | None = None  # why an ONNX Runtime int8 file is not faster (dlopt.quantize.slow_ops)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def output_error(judge: Judge, built: Built) -> float:
    """Mean relative error of the first output over the probe inputs (a smooth stand-in for the metric)."""
    refs = judge._reference(judge.probe)
    errs = [relative_error(r[0], tuple(built.runner(*x))[0]) for x, r in zip(judge.probe, refs, strict=True)]
    return sum(errs) / max(1, len(errs))


def rank_layers(build: Builder, recipe: Recipe, layers: list[str], judge: Judge, deadline: float,
                progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Exclude-one sensitivity: the error reduction when only that layer stays in float, largest first."""
    base = output_error(judge, build(recipe, True))
    rows = []
    for i, layer in enumerate(layers):
        if time.monotonic() > deadline:
            break
        progress(f"sensitivity {i + 1}/{len(layers)}: {layer}")
        err = output_error(judge, build(recipe.keeping((*recipe.keep_float, layer)), True))
        rows.append({"layer": layer, "error_reduction": round(base - err, 6), "error_without": round(err, 6)})
    return sorted(rows, key=lambda r: -r["error_reduction"])


def within(drop: float | None, budget: float) -> bool:
    return drop is None or drop <= budget


def fallback(build: Builder, built: Built, judge: Judge, before_val: float | None, max_drop: float,
             max_layers: int, budget_s: float, progress: Callable[[str], None]) -> tuple[Built, Search]:
    """Keep the most sensitive layers in float until the validation drop is within `max_drop` less its sampling
    margin (`Margin`)."""
    t0 = time.monotonic()
    if max_drop >= 100.0 and judge.cannot_exceed(max_drop):  # (no point can be lost beyond 100)
        return built, Search(stopped=f"not searched: a drop cannot exceed 100 points, within the --max-drop of "
                             f"{max_drop:g} (the held-out agreement check still applies)")
    search = Search(initial_drop=judge.loss(built.runner, "val", before_val))
    search.final_drop, margin = search.initial_drop, margin_for(judge, max_drop)
    search.margin = margin.to_json()
    if margin.holds(search.initial_drop) or max_layers == 0 or not built.quantized_layers:
        search.within_budget = margin.holds(search.initial_drop)
        search.stopped = "within budget" if search.within_budget else _over(search.initial_drop, margin) or \
            "nothing to keep in float"
        return built, search
    progress(f"drop {search.initial_drop:.2f} > {margin.select:.3g}: ranking {len(built.quantized_layers)} layers")
    search.ranking = rank_layers(build, built.recipe, list(built.quantized_layers), judge, t0 + budget_s, progress)
    best, best_drop, k = built, search.initial_drop, 1
    ranked = [r["layer"] for r in search.ranking]
    while k <= min(max_layers, len(ranked)):
        recipe = built.recipe.keeping((*built.recipe.keep_float, *ranked[:k]))
        candidate = build(recipe, False)
        drop = judge.loss(candidate.runner, "val", before_val)
        search.attempts.append({"keep_float": ranked[:k], "drop": drop})
        progress(f"kept {k} layer(s) in float: drop {drop:.2f}")
        if drop < best_drop:
            best, best_drop = candidate, drop
        if margin.holds(drop) or time.monotonic() - t0 > budget_s:
            break
        k = k * 2 if k * 2 <= min(max_layers, len(ranked)) or k == min(max_layers, len(ranked)) \
            else min(max_layers, len(ranked))
    search.final_drop, search.within_budget = best_drop, margin.holds(best_drop)
    search.stopped = "within budget" if search.within_budget else (
        "search budget spent" if time.monotonic() - t0 > budget_s else f"best of {len(search.attempts)} attempts")
    if not search.within_budget and (over := _over(best_drop, margin)):
        search.stopped += f"; {over}"
    search.seconds = round(time.monotonic() - t0, 2)
    return best, search


def _over(drop: float | None, margin: Margin) -> str:
    """Why a drop within the budget itself is not taken (it is within the sampling margin), else ''."""
    if drop is None or margin.holds(drop) or drop > margin.budget:
        return ""
    return (f"drop {drop:g} is within the {margin.budget:g}-point budget but not its {margin.points:.3g}-point "
            f"sampling margin ({margin.rows} rows)")
