"""Accuracy-aware quantization: when a candidate loses more than the budget, rank its layers by how much
keeping each one in float reduces the output error, then keep the top 1, 2, 4... in float until the drop
on the validation split is within budget, or stop with the best found."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dlopt.quantize.judge import Judge, relative_error
from dlopt.quantize.recipe import Built, Recipe

Builder = Callable[[Recipe, bool], Built]  # (recipe, fast) -> built; fast = a reduced calibration set


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
    """Keep the most sensitive layers in float until the validation drop is within `max_drop`."""
    t0 = time.monotonic()
    if max_drop >= 100.0 and judge.cannot_exceed(max_drop):  # (no point can be lost beyond 100)
        return built, Search(stopped=f"not searched: a drop cannot exceed 100 points, within the --max-drop of "
                             f"{max_drop:g} (the held-out agreement check still applies)")
    search = Search(initial_drop=judge.loss(built.runner, "val", before_val))
    search.final_drop = search.initial_drop
    if within(search.initial_drop, max_drop) or max_layers == 0 or not built.quantized_layers:
        search.within_budget = within(search.initial_drop, max_drop)
        search.stopped = "within budget" if search.within_budget else "nothing to keep in float"
        return built, search
    progress(f"drop {search.initial_drop:.2f} > {max_drop:g}: ranking {len(built.quantized_layers)} layers")
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
        if within(drop, max_drop) or time.monotonic() - t0 > budget_s:
            break
        k = k * 2 if k * 2 <= min(max_layers, len(ranked)) or k == min(max_layers, len(ranked)) \
            else min(max_layers, len(ranked))
    search.final_drop, search.within_budget = best_drop, within(best_drop, max_drop)
    search.stopped = "within budget" if search.within_budget else (
        "search budget spent" if time.monotonic() - t0 > budget_s else f"best of {len(search.attempts)} attempts")
    search.seconds = round(time.monotonic() - t0, 2)
    return best, search
