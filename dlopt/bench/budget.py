"""The bench's time budget across input shapes, and what it cut.

`--budget-s` is per input shape and covers the timed calls (warm-up is apart, and reported): a shape's timing gets
up to budget_s, and never more than what is left of shapes x budget_s, so a block that ran past one shape's deadline
is paid back by the next shape and the bench's timing as a whole stays within shapes x budget_s. Inside a shape the
round-robin loop (dlopt.bench.timing) starts no call that would end past the deadline. A variant the budget stopped
before `min_calls` is marked: stop "budget spent" with the calls it got (status "cut" when not one fitted), and a
note at the end names them. bench.json's "budget" records what was allowed and what was used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from dlopt.bench.config import BenchConfig
from dlopt.bench.timing import MEDIAN_CALLS


def shape_label(shape: tuple[int, int | None]) -> str:
    return f"batch {shape[0]}" + (f" seq {shape[1]}" if shape[1] else "")


@dataclass
class Budget:
    cfg: BenchConfig
    shapes: int
    started: float = field(default_factory=time.perf_counter)
    timing_s: float = 0.0  # timed calls, all shapes
    warmup_s: float = 0.0  # preparing and warming the variants, all shapes (outside the budget)
    cut: dict[str, list[str]] = field(default_factory=dict)  # shape label -> "variant (n calls)"

    @property
    def total_s(self) -> float | None:
        return None if self.cfg.iterations else self.cfg.budget_s * self.shapes

    def deadline(self) -> float | None:
        """The perf_counter time by which the shape about to be timed stops adding calls (None: --iterations)."""
        if self.total_s is None:
            return None
        return time.perf_counter() + max(0.0, min(self.cfg.budget_s, self.total_s - self.timing_s))

    def warm_calls_s(self, variants: int) -> float:
        """How long a variant's untimed warm-up calls may take (after the first call; at least one is made): a tenth
        of its share of a shape's budget, so that warming slow variants does not take many times the budget."""
        return float("inf") if self.cfg.iterations else self.cfg.budget_s / (10 * max(1, variants))

    def shape_done(self, shape: tuple[int, int | None], warm_s: float, timing_s: float) -> str | None:
        """Account one shape; a note when its warm-up (outside the budget) made it take well over --budget-s."""
        self.warmup_s += warm_s
        self.timing_s += timing_s
        if self.cfg.iterations or warm_s + timing_s <= 1.5 * self.cfg.budget_s + 1.0:
            return None
        return (f"{shape_label(shape)} took {warm_s + timing_s:.1f} s against --budget-s {self.cfg.budget_s:g}: "
                f"warm-up and first calls (compiling, loading) {warm_s:.1f} s, outside the budget; timed calls "
                f"{timing_s:.1f} s")

    def cut_row(self, row: dict[str, Any], shape: tuple[int, int | None], calls: int, estimate_s: float) -> None:
        """Mark a row the budget stopped before min_calls (status cut when it got no timed call)."""
        row["calls_wanted"] = self.cfg.min_calls
        self.cut.setdefault(shape_label(shape), []).append(f"{row['variant']} ({calls} call{'s' * (calls != 1)})")
        if calls == 0:
            row.update(status="cut", stop="budget spent",
                       reason=f"budget spent before its first timed call: one call takes about "
                              f"{estimate_s * 1e3:.4g} ms by its warm-up (--budget-s {self.cfg.budget_s:g} per input "
                              "shape)")
        elif calls < MEDIAN_CALLS:
            row.update(noisy=True, noise_reason=f"only {calls} timed call{'s' * (calls != 1)} before the budget was "
                                                "spent: its median cannot be ranked")

    def note(self) -> str | None:
        """The line naming every shape and variant the budget cut short."""
        if not self.cut:
            return None
        where = "; ".join(f"{label}: {', '.join(names)}" for label, names in self.cut.items())
        return (f"budget spent before these had {self.cfg.min_calls} timed calls (--budget-s {self.cfg.budget_s:g} "
                f"per input shape): {where}; their rows say \"budget spent\" and how many calls they got. A larger "
                "--budget-s, or fewer --backend, times them fully")

    def record(self) -> dict[str, Any]:
        """bench.json's "budget": what was allowed and what was used (seconds)."""
        return {"per_shape_s": None if self.cfg.iterations else self.cfg.budget_s, "iterations": self.cfg.iterations,
                "shapes": self.shapes, "total_s": self.total_s, "timing_s": round(self.timing_s, 3),
                "warmup_s": round(self.warmup_s, 3), "wall_s": round(time.perf_counter() - self.started, 3),
                "cut": [f"{label}: {name}" for label, names in self.cut.items() for name in names]}
