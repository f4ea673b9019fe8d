"""Summary statistics of per-call timings (seconds in, milliseconds out)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), q in [0, 100], of already-sorted values."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    pos = (len(sorted_values) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(frozen=True)
class Stats:
    """Latency of one call, in milliseconds."""

    n: int
    median_ms: float
    mean_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    iqr_ms: float
    std_ms: float
    percentiles_ms: dict[str, float] = field(default_factory=dict)  # "99.9" -> ms, the percentiles asked for

    @property
    def iqr_ratio(self) -> float:
        """IQR as a fraction of the median: the noise measure convergence and --compare use."""
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "iqr_ratio": round(self.iqr_ratio, 6)}


def pct_key(q: float) -> str:
    """50.0 -> '50', 99.9 -> '99.9': the key of a percentile in `percentiles_ms`."""
    return f"{q:g}"


def summarize(times_s: Sequence[float], percentiles: Sequence[float] = ()) -> Stats:
    """Stats of timings given in seconds; `percentiles` (0-100] are reported in `percentiles_ms` too."""
    if not times_s:
        raise ValueError("no timings to summarize")
    ms = sorted(t * 1e3 for t in times_s)
    n = len(ms)
    mean = sum(ms) / n
    var = sum((x - mean) ** 2 for x in ms) / (n - 1) if n > 1 else 0.0
    return Stats(
        n=n, median_ms=percentile(ms, 50), mean_ms=mean, p90_ms=percentile(ms, 90), p99_ms=percentile(ms, 99),
        min_ms=ms[0], max_ms=ms[-1], iqr_ms=percentile(ms, 75) - percentile(ms, 25), std_ms=math.sqrt(var),
        percentiles_ms={pct_key(q): percentile(ms, q) for q in percentiles},
    )


def converged(times_s: Sequence[float], iqr_target: float, min_calls: int) -> bool:
    """Enough calls, and the interquartile range under `iqr_target` of the median."""
    return len(times_s) >= min_calls and summarize(times_s).iqr_ratio < iqr_target
