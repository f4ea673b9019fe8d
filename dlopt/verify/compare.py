"""Per-output statistics: how far an artifact's output is from the eager reference."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class OutputStats:
    name: str
    shape: tuple[int, ...]
    max_abs: float | None = None  # None when the output has no finite comparison (NaN/Inf, shape error)
    max_rel: float | None = None  # |a-b| / |b|, |b| floored at 1e-12
    mean_abs: float | None = None
    p99_abs: float | None = None
    cosine: float | None = None
    nan: int = 0  # in the artifact's output
    inf: int = 0
    ref_nan: int = 0  # in the eager reference
    ref_inf: int = 0
    needed_atol: float | None = None  # the smallest atol that passes at the spec's rtol
    top1: float | None = None  # fraction of rows whose argmax agrees (classifiers)
    error: str | None = None  # why no comparison was possible (shape or dtype mismatch)

    @property
    def nonfinite(self) -> int:
        return self.nan + self.inf + self.ref_nan + self.ref_inf

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def compare(name: str, ref: Any, out: Any, rtol: float, classifier: bool = False) -> OutputStats:
    """Compare one output tensor with its reference, in float64."""
    import torch

    shape = tuple(out.shape)
    if tuple(ref.shape) != shape:
        return OutputStats(name, shape, error=f"shape {list(shape)}, eager gives {list(ref.shape)}")
    a, b = out.detach().to(torch.float64).reshape(-1), ref.detach().to(torch.float64).reshape(-1)
    counts = {"nan": int(a.isnan().sum()), "inf": int(a.isinf().sum()),
              "ref_nan": int(b.isnan().sum()), "ref_inf": int(b.isinf().sum())}
    if a.numel() == 0:
        return OutputStats(name, shape, 0.0, 0.0, 0.0, 0.0, 1.0, needed_atol=0.0, **counts)
    diff = (a - b).abs()
    both = a.isfinite() & b.isfinite()
    diff = torch.where(both | (a == b), diff.nan_to_num(0.0), torch.full_like(diff, math.inf))
    norm = a.norm() * b.norm()
    cosine = float(a @ b / norm) if norm > 0 else (1.0 if a.abs().max() == b.abs().max() == 0 else 0.0)
    return OutputStats(
        name, shape,
        max_abs=_finite(float(diff.max())),
        max_rel=_finite(float((diff / b.abs().clamp(min=1e-12)).max())),
        mean_abs=_finite(float(diff.mean())),
        p99_abs=_finite(float(torch.quantile(diff[: 1 << 24], 0.99))),
        cosine=_finite(cosine),
        needed_atol=_finite(max(0.0, float((diff - rtol * b.abs().nan_to_num(0.0)).max()))),
        top1=_top1(out, ref) if classifier else None,
        **counts,
    )


def _top1(out: Any, ref: Any) -> float | None:
    if out.ndim < 2 or out.shape[-1] < 2:
        return None
    return float((out.argmax(-1) == ref.argmax(-1)).to(float).mean())
