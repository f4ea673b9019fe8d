"""Pass/fail criteria. A criterion judges one output of one case; verification takes any criterion.

fp32 exports use ElementwiseTolerance (the spec's tolerance). Quantized or pruned variants, whose outputs
are meant to differ, plug in a task-level criterion: TopOneAgreement here, or their own (e.g. a metric change
measured on held-out data) by implementing `judge`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from dlopt.models.spec import Tolerance
from dlopt.verify.compare import OutputStats, ReferenceScale


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


def scaled_bound(ref: Any, atol: float, rtol: float) -> Any:
    """Per element: atol + rtol * max(|ref|, RMS(ref)) (float64), RMS over this output of this case.

    Why the RMS floor: an output element is a sum of many products (y = sum_k w_k x_k over every layer), and float32
    rounds each partial sum, so its error is about eps * sqrt(terms) * sum_k |w_k x_k| -- the size of the terms,
    i.e. the output's scale, not the element's own value. A logit that cancels to ~0 carries the same absolute
    error as its neighbours; `rtol * |ref|` alone would hold it to `atol` and fail correct deep models: measured
    (benchmarks/results/tv_tolerance.json, 224x224, unit-scale logits) eager float32 itself is 5.3e-5 from the
    float64 answer on resnet50 (3.1e-6 on resnet18: the error grows with depth), and ONNX Runtime / TorchScript
    are as close to float64 as eager is; only their summation order differs. Elements at or above the RMS keep
    the plain `atol + rtol*|ref|`; the floor is `rtol` of the output's scale, so a wrong output still fails
    (an error of 1e-3 of the RMS is 10x over it) and a tiny output (random weights giving 1e-18) gets a tiny
    floor -- the degenerate-reference check (`vacuous`) is unchanged."""
    import torch

    b = ref.detach().to(torch.float64).nan_to_num(0.0, 0.0, 0.0)
    rms = b.square().mean().sqrt() if b.numel() else b.new_zeros(())
    return atol + rtol * b.abs().clamp_min(float(rms))


def needed_atol(ref: Any, out: Any, rtol: float) -> float:
    """The smallest atol with which `out` passes `scaled_bound` at `rtol` (inf where only one side is finite)."""
    import torch

    a, b = out.detach().to(torch.float64), ref.detach().to(torch.float64)
    diff = (a - b).abs()
    both = a.isfinite() & b.isfinite() | (a == b)
    diff = torch.where(both, diff.nan_to_num(0.0), torch.full_like(diff, float("inf")))
    return max(0.0, float((diff - scaled_bound(ref, 0.0, rtol)).max())) if diff.numel() else 0.0


@dataclass(frozen=True)
class ElementwiseTolerance:
    """|a - b| <= atol + rtol * max(|b|, RMS(b)) for every element (b: the eager reference; `scaled_bound` says
    why the RMS floor)."""

    atol: float = Tolerance().atol
    rtol: float = Tolerance().rtol

    @property
    def name(self) -> str:
        return f"elementwise atol={self.atol:g} rtol={self.rtol:g}*max(|ref|,RMS)"

    @classmethod
    def of(cls, tolerance: Tolerance) -> ElementwiseTolerance:
        return cls(tolerance.atol, tolerance.rtol)

    def judge(self, stats: OutputStats, ref: Any, out: Any) -> str | None:
        if reason := _basic(stats):
            return reason
        if tuple(ref.shape) != tuple(out.shape) or not ref.is_floating_point():
            exact = stats.needed_atol is not None and stats.needed_atol > self.atol
            return f"max abs err {stats.max_abs:.3g} exceeds atol {self.atol:g}" if exact else None
        if needed_atol(ref, out, self.rtol) > self.atol:
            return (f"max abs err {stats.max_abs:.3g} exceeds atol {self.atol:g} + rtol {self.rtol:g}*max(|ref|, "
                    "RMS(ref))")
        return self._relative(stats, ref, out)

    def _relative(self, stats: OutputStats, ref: Any, out: Any) -> str | None:
        """Where the whole reference is within atol (random weights: mobilenet_v2 outputs ~1e-9), the elementwise
        bound accepts any output, all zeros included; float32 keeps its relative precision at any scale, so the
        case is judged relative to the output's scale instead: error RMS / reference RMS within rtol, and the
        top-1 class unchanged where the output is class scores. An all-zero reference is left to `vacuous`."""
        import torch

        b = ref.detach().to(torch.float64)
        if b.numel() == 0 or float(b.abs().max()) * (1 - self.rtol) > self.atol:
            return None  # the elementwise bound means something here
        rms = float(b.square().mean().sqrt())
        if rms == 0.0:
            return None
        rel = float((out.detach().to(torch.float64) - b).square().mean().sqrt()) / rms
        where = f"judged relative to the output's scale (reference RMS {rms:.2g} within atol {self.atol:g})"
        if rel > self.rtol:
            cosine = "" if stats.cosine is None else f", cosine {stats.cosine:.6g}"
            return f"{where}: error RMS / reference RMS {rel:.3g} > rtol {self.rtol:g}{cosine}"
        if stats.top1 is not None and stats.top1 < 1.0:
            return f"{where}: top-1 agreement {stats.top1:.3f} < 1 (error RMS / reference RMS {rel:.3g})"
        return None

    def relative_note(self, scale: ReferenceScale) -> str | None:
        """The label of an output judged relative to its scale (see `_relative`), or None when judged elementwise."""
        if not scale.floating or scale.nonfinite or self.atol < scale.zero_atol or scale.rms == 0.0:
            return None
        return (f"judged relative to the output's scale: output RMS {scale.rms:.2g} (max {scale.max_abs:.2g}) is "
                f"within atol {self.atol:g}, so each case is held to error RMS / output RMS <= rtol {self.rtol:g} "
                "and the same top-1 class")

    def vacuous(self, scale: ReferenceScale) -> str | None:
        """Why this tolerance would accept a constant output for this reference (the check proves nothing)."""
        if not scale.floating or scale.nonfinite:
            return None
        if self.rtol >= 1:
            return (f"degenerate check: rtol {self.rtol:g} >= 1 accepts any output of the reference's sign, "
                    "all zeros included; give --rtol below 1")
        if self.atol >= scale.zero_atol:  # judged relative to its scale (`_relative`), unless nothing is there
            if scale.rms == 0.0:
                return ("degenerate reference: the output is all zeros, so no check can tell a correct artifact "
                        "from one that computes nothing -- load real weights (--weights) or give inputs that move it")
            if scale.spread <= self.rtol * scale.rms:
                return (f"degenerate reference: the output hardly varies even at its own scale (RMS {scale.rms:.3g}, "
                        f"spread {scale.spread:.2g}); the check would accept a constant output -- load real weights "
                        "(--weights) or give inputs that vary it")
            return None
        if self.atol + self.rtol * scale.rms >= scale.constant_atol:  # the RMS floor widens every bound
            return (f"degenerate reference: the output hardly varies (RMS {scale.rms:.3g}, spread {scale.spread:.2g} "
                    f"within atol {self.atol:g} + rtol {self.rtol:g}*|ref|); the check would accept a constant output "
                    "-- load real weights (--weights), give inputs that vary it, or a smaller --atol")
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


@dataclass(frozen=True)
class FiniteOutputs:
    """The artifact runs at this shape and gives finite outputs of the reference's shape. Quantized variants
    use it for the shape sweep; their accuracy is judged on held-out data (MetricChange, agreement, error)."""

    @property
    def name(self) -> str:
        return "runs, finite outputs of the right shape"

    def judge(self, stats: OutputStats, ref: Any, out: Any) -> str | None:
        return _basic(stats)


@dataclass(frozen=True)
class RelativeError:
    """Task-level for regression and reconstruction: ||out - ref|| / ||ref|| <= max_rel over the output."""

    max_rel: float = 0.05

    @property
    def name(self) -> str:
        return f"relative error <= {self.max_rel:g}"

    @staticmethod
    def value(ref: Any, out: Any) -> float:
        ref, out = ref.float(), out.float()
        return float((out - ref).norm() / ref.norm().clamp_min(1e-12))

    def judge(self, stats: OutputStats, ref: Any, out: Any) -> str | None:
        if reason := _basic(stats):
            return reason
        rel = self.value(ref, out)
        return None if rel <= self.max_rel else f"relative error {rel:.3g} > {self.max_rel:g}"


@dataclass(frozen=True)
class MetricChange:
    """Task-level on held-out data: the spec's metric may lose at most `max_drop` points (percentage points
    for fraction metrics such as accuracy, percent relative change otherwise). Judged on whole-split metrics
    with `judge_metrics`; per output it only asks for finite values."""

    metric: str
    max_drop: float = 1.0
    higher_is_better: bool = True
    fraction: bool = True  # the metric is a fraction in [0, 1] (accuracy, exact match)

    @property
    def name(self) -> str:
        unit = "points" if self.fraction else "% relative"
        return f"{self.metric} drop <= {self.max_drop:g} {unit}"

    def drop(self, before: float, after: float) -> float:
        sign = 1.0 if self.higher_is_better else -1.0
        if self.fraction:
            return 100.0 * sign * (before - after)
        return 100.0 * sign * (before - after) / max(abs(before), 1e-12)

    def judge_metrics(self, before: float, after: float) -> str | None:
        drop = self.drop(before, after)
        return None if drop <= self.max_drop else f"{self.metric} fell {drop:.3g} > {self.max_drop:g} ({self.name})"

    def judge(self, stats: OutputStats, ref: Any, out: Any) -> str | None:
        return _basic(stats)


def task_criterion(task: str, min_agreement: float = 0.95, max_rel: float = 0.1) -> Criterion:
    """The per-output criterion for a variant meant to differ from fp32 (quantized): top-1 agreement for
    classifiers and Q-networks, relative error for everything else."""
    if task in ("classification", "reinforcement"):
        return TopOneAgreement(min_agreement)
    return RelativeError(max_rel)


def for_artifact(task: str, metadata: dict[str, str]) -> Criterion | None:
    """The criterion a quantized artifact should be verified with (its metadata holds "quantization", written by
    dlopt.quantize, or an IR is marked to compute in half precision), or None for an fp32 export (the spec's
    elementwise tolerance then applies)."""
    if "quantization" not in metadata and metadata.get("inference_precision") not in ("bf16", "f16"):
        return None
    return task_criterion(task)
