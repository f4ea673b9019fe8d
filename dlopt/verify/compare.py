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
    ref_rms: float | None = None  # sqrt(mean(ref^2)): the scale the errors are read against
    err_rms: float | None = None  # max abs err / ref_rms: the error relative to the output's own size

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
    rms = float(b.nan_to_num(0.0, 0.0, 0.0).square().mean().sqrt())
    cosine = float(a @ b / norm) if norm > 0 else (1.0 if a.abs().max() == b.abs().max() == 0 else 0.0)
    return OutputStats(
        name, shape,
        max_abs=_finite(float(diff.max())),
        max_rel=_finite(float((diff / b.abs().clamp(min=1e-12)).max())),
        mean_abs=_finite(float(diff.mean())),
        p99_abs=_finite(float(torch.quantile(diff[: 1 << 24], 0.99))),
        cosine=_finite(cosine),
        # the rule of criteria.scaled_bound: atol + rtol * max(|ref|, RMS(ref))
        needed_atol=_finite(max(0.0, float((diff - rtol * b.abs().nan_to_num(0.0).clamp_min(rms)).max()))),
        top1=_top1(out, ref) if classifier else None,
        ref_rms=_finite(rms),
        err_rms=_finite(float(diff.max()) / rms) if rms > 0 else None,
        **counts,
    )


def _top1(out: Any, ref: Any) -> float | None:
    if out.ndim < 2 or out.shape[-1] < 2:
        return None
    return float((out.argmax(-1) == ref.argmax(-1)).to(float).mean())


@dataclass(frozen=True)
class ReferenceScale:
    """How large and how varied one output of the eager reference is, pooled over every verification case.

    `zero_atol` / `constant_atol`: the smallest atol at which an all-zero output / a constant output (the
    reference's midrange) would pass `|a - b| <= atol + rtol*|b|` on every case. At or above either, the
    elementwise check cannot tell a correct artifact from one that ignores its input.
    """

    name: str
    rms: float
    max_abs: float
    spread: float  # max |ref - midrange|: half the range of the values the model gives
    zero_atol: float
    constant_atol: float
    floating: bool = True  # integer/bool outputs are compared exactly; no tolerance makes them vacuous
    nonfinite: int = 0  # NaN/Inf in the reference (those cases fail on their own; the scale is then moot)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reference_scale(name: str, refs: list[Any], rtol: float) -> ReferenceScale:
    """Pool one output's reference tensors (one per case) and measure their scale, in float64."""
    import torch

    floating = all(r.is_floating_point() or r.is_complex() for r in refs)
    flat = [r.detach().to(torch.float64).reshape(-1) for r in refs]
    b = torch.cat(flat) if flat else torch.zeros(0, dtype=torch.float64)
    nonfinite = int((~b.isfinite()).sum())
    b = b[b.isfinite()]
    if b.numel() == 0:
        return ReferenceScale(name, 0.0, 0.0, 0.0, 0.0, 0.0, floating, nonfinite)
    mid = (b.max() + b.min()) / 2
    slack = rtol * b.abs()
    return ReferenceScale(name, rms=float(b.square().mean().sqrt()), max_abs=float(b.abs().max()),
                          spread=float((b - mid).abs().max()),
                          zero_atol=float((b.abs() - slack).clamp_min(0).max()),
                          constant_atol=float(((b - mid).abs() - slack).clamp_min(0).max()), floating=floating,
                          nonfinite=nonfinite)
