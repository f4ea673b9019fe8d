"""Pass/fail criteria. A criterion judges one output of one case; verification takes any criterion.

fp32 exports use ElementwiseTolerance (the spec's tolerance). Quantized or pruned variants, whose outputs
are meant to differ, plug in a task-level criterion: TopOneAgreement here, or their own (e.g. a metric change
measured on held-out data) by implementing `judge`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from dlopt.spec import Tolerance
from dlopt.verify.compare import OutputStats


class Criterion(Protocol):
    name: str

    def judge(self, stats: OutputStats, ref: Any, out: Any) -> str | None:
        """None if the output passes, else one short reason."""


def _basic(stats: OutputStats) -> str | None:
    if stats.error:
        return stats.error
    if stats.ref_nan or stats.ref_inf:
        return f"the eager model itself gives {stats.ref_nan} NaN and {stats.ref_inf} Inf values"
    if stats.nan or stats.inf:
        return f"{stats.nan} NaN and {stats.inf} Inf values in the output"
    return None


@dataclass(frozen=True)
class ElementwiseTolerance:
    """|a - b| <= atol + rtol * |b| for every element (b: the eager reference)."""

    atol: float = Tolerance().atol
    rtol: float = Tolerance().rtol

    @property
    def name(self) -> str:
        return f"elementwise atol={self.atol:g} rtol={self.rtol:g}"

    @classmethod
    def of(cls, tolerance: Tolerance) -> ElementwiseTolerance:
        return cls(tolerance.atol, tolerance.rtol)

    def judge(self, stats: OutputStats, ref: Any, out: Any) -> str | None:
        if reason := _basic(stats):
            return reason
        if stats.needed_atol is not None and stats.needed_atol > self.atol:
            return f"max abs err {stats.max_abs:.3g} exceeds atol {self.atol:g} + rtol {self.rtol:g}*|ref|"
        return None


@dataclass(frozen=True)
class TopOneAgreement:
    """Task-level: the argmax agrees on at least `min_agreement` of the rows (classifier outputs)."""

    min_agreement: float = 0.99

    @property
    def name(self) -> str:
        return f"top-1 agreement >= {self.min_agreement:g}"

    def judge(self, stats: OutputStats, ref: Any, out: Any) -> str | None:
        if reason := _basic(stats):
            return reason
        if stats.top1 is None:
            return "top-1 agreement needs a classifier output (B, classes)"
        if stats.top1 < self.min_agreement:
            return f"top-1 agreement {stats.top1:.3f} < {self.min_agreement:g}"
        return None
