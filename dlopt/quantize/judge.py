"""How much a candidate lost: the spec's metric on a data split when the run has data (through the training
family's own loop), else agreement / relative error with fp32 on random valid inputs. Drops are in points:
percentage points for fraction metrics (accuracy), percent relative change for the others (mse, elbo...)."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

FRACTION_METRICS = frozenset({"accuracy", "exact_match"})
FLAT_RATIO = 0.25  # output variation between held-out inputs under this fraction of its RMS: say the inputs are flat


def _tuple(out: Any) -> tuple[Any, ...]:
    from dlopt.models.outputs import flatten  # dict and nested outputs: their tensors, in the order exporters use

    return flatten(out)


def relative_error(ref: Any, out: Any) -> float:
    """||out - ref|| / ||ref|| over the whole output (floored so a zero reference does not divide by zero)."""
    ref, out = ref.float(), out.float()
    return float((out - ref).norm() / ref.norm().clamp_min(1e-12))


def top1_matches(ref: Any, out: Any) -> tuple[int, int] | None:
    """(rows whose argmax agrees, rows): (B, C) class scores, or (B, T, V) token logits per position."""
    if ref.dim() == 3:
        ref, out = ref.reshape(-1, ref.shape[-1]), out.reshape(-1, out.shape[-1])
    if ref.dim() != 2 or ref.shape[1] < 2:
        return None
    return int((ref.argmax(1) == out.argmax(1)).sum()), int(ref.shape[0])


def top1(ref: Any, out: Any) -> float | None:
    """Fraction of rows whose argmax agrees (None when the output is not classifier-shaped)."""
    got = top1_matches(ref, out)
    return None if got is None else got[0] / max(got[1], 1)


@dataclass
class ParitySums:
    """Running sums for parity over many batches: squared error and reference norm per output, top-1 matches."""

    error: list[float] = field(default_factory=list)  # sum of squared (out - ref), per output
    norm: list[float] = field(default_factory=list)  # sum of squared ref, per output
    matches: int = 0
    rows: int = 0
    classifier_shaped: bool = True

    def add(self, ref: tuple[Any, ...], out: tuple[Any, ...]) -> None:
        if not self.error:
            self.error, self.norm = [0.0] * len(ref), [0.0] * len(ref)
        for i, (r, o) in enumerate(zip(ref, out)):  # outputs beyond the reference's are not compared
            r, o = r.double(), o.double()
            self.error[i] += float(((o - r) ** 2).sum())
            self.norm[i] += float((r * r).sum())
        got = top1_matches(ref[0], out[0])
        self.classifier_shaped = self.classifier_shaped and got is not None
        self.matches += got[0] if got else 0
        self.rows += got[1] if got else 0

    def relative_error(self) -> float:
        return max(math.sqrt(e) / max(math.sqrt(n), 1e-12) for e, n in zip(self.error, self.norm, strict=True))

    def agreement(self) -> float | None:
        return self.matches / self.rows if self.classifier_shaped and self.rows else None


@dataclass
class Judge:
    """Scores runners against the fp32 reference. `probe` (val split or random) drives the search; `held`
    (test split or other random inputs) gives the reported agreement / error."""

    evaluator: Any  # dlopt.tasks.evaluator.Evaluator or None
    spec: Any
    whole: Any  # the whole fp32 model (the family evaluates it; GAN: generator + discriminator)
    reference: Any  # the fp32 entry module
    probe: Sequence[tuple[Any, ...]]  # calibrate.Batches: made when read
    held: Sequence[tuple[Any, ...]]
    basis: str = ""  # what `held` is when it is neither a data split nor random: the user's inputs file, which rows
    _refs: dict[int, list[tuple[Any, ...]]] = field(default_factory=dict)
    _drops: dict[tuple[int, int], tuple[Any, float]] = field(default_factory=dict)  # (runner, inputs) -> drop
    metric_broken: str | None = None  # why the family's evaluation cannot run an artifact (seq2seq decoding)

    @property
    def uses_metric(self) -> bool:
        return self.evaluator is not None and self.metric_broken is None

    @property
    def fraction(self) -> bool:
        return self.spec.metric in FRACTION_METRICS

    def _module(self, runner: Any) -> Any:
        from dlopt.tasks.evaluator import runner_module

        module = runner_module(runner)
        if not self.spec.entry:
            return module
        whole = copy.deepcopy(self.whole)
        *parents, last = self.spec.entry.split(".")
        owner = whole
        for attr in parents:
            owner = getattr(owner, attr)
        setattr(owner, last, module)
        return whole

    def metric(self, runner: Any | None, split: str) -> float | None:
        """The spec metric of a runner (None = the fp32 model itself) on a split; None without data."""
        if not self.uses_metric:
            return None
        model = self.whole if runner is None else self._module(runner)
        try:
            return float(self.evaluator.evaluate(model, split)[self.spec.metric])
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # the family needs more than forward() (seq2seq's generate: an UnsupportedError),
            # or the data does not fit this (untrained, resized) model: judge by parity with fp32, and say why
            self.metric_broken = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}" if str(exc) else \
                type(exc).__name__
            return None

    def drop(self, before: float | None, after: float | None) -> float | None:
        """Points lost: higher-is-better metrics lose when they fall, lower-is-better when they rise."""
        if before is None or after is None:
            return None
        sign = 1.0 if self.evaluator.higher_is_better else -1.0
        if self.fraction:
            return round(100.0 * sign * (before - after), 4)
        return round(100.0 * sign * (before - after) / max(abs(before), 1e-12), 4)

    def _reference(self, inputs: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        import torch

        key = id(inputs)
        if key not in self._refs:
            with torch.inference_mode():
                self._refs[key] = [_tuple(self.reference(*x)) for x in inputs]
        return self._refs[key]

    def parity(self, runner: Any, inputs: Sequence[tuple[Any, ...]]) -> dict[str, float | None]:
        """Top-1 agreement (classifier-shaped first output) and relative error of all outputs vs fp32, summed
        batch by batch (as over the concatenation, without holding every output at once)."""
        refs = self._reference(inputs)
        sums = ParitySums()
        for x, ref in zip(inputs, refs, strict=True):
            sums.add(ref, _tuple(runner(*x)))
        return {"top1_agreement": sums.agreement() if self.by_agreement else None,
                "relative_error": sums.relative_error()}

    def parity_drop(self, runner: Any, inputs: Sequence[tuple[Any, ...]]) -> float:
        """Without a metric: points of disagreement (classifiers, Q-networks) or of relative error. Kept per
        (runner, inputs): auto scores the chosen candidate on the probe, then the search starts from that score."""
        hit = self._drops.get((id(runner), id(inputs)))
        if hit is not None and hit[0] is runner:  # the runner is held, so its id cannot be reused meanwhile
            return hit[1]
        p = self.parity(runner, inputs)
        value = 1.0 - p["top1_agreement"] if p["top1_agreement"] is not None else p["relative_error"]
        self._drops[(id(runner), id(inputs))] = (runner, round(100.0 * float(value), 4))
        return self._drops[(id(runner), id(inputs))][1]

    def flat_inputs_note(self) -> str | None:
        """A warning when the held-out inputs barely move the fp32 output: its variation between inputs is under a
        quarter of its size (a common offset dominates), so the relative error, taken against the whole output,
        understates the error by that factor, and top-1 agreement turns on the few inputs near a class boundary
        (resnet50 with seeded weights on digits at 224x224: 2 distinct top-1 classes over 270 images)."""
        ref = self._reference(self.held)  # needed for the held-out verdict anyway (kept)
        if not ref:
            return None
        import torch

        out = torch.cat([r[0].double().reshape(r[0].shape[0], -1) for r in ref])
        if out.shape[0] < 2:
            return None
        size = float(out.pow(2).mean().sqrt())
        between = float((out - out.mean(0)).pow(2).mean().sqrt())
        if size == 0.0 or between >= FLAT_RATIO * size:
            return None
        classes = len(set(out.argmax(1).tolist())) if out.shape[1] > 1 and self.spec.task == "classification" else None
        shown = f"; {classes} distinct top-1 class(es) over {out.shape[0]} inputs" if classes is not None else ""
        return (f"the held-out inputs barely move the fp32 output (RMS {between:.3g} between inputs, {size:.3g} in "
                f"all{shown}): relative error understates the error about {size / max(between, 1e-12):.0f}x and "
                "top-1 agreement turns on the few inputs near a class boundary; judge on real inputs (--inputs "
                "FILE.npz)")

    def cannot_exceed(self, max_drop: float) -> bool:
        """Whether no candidate can lose more than `max_drop`: the loss is top-1 disagreement (a classifier-shaped
        output: at most 100 points) and any metric is a fraction (accuracy: at most 100 points). The search's
        probe pass then decides nothing (at 224x224 it was half of the stage's time); the held-out verdict stays."""
        if max_drop < 100.0 or (self.uses_metric and not self.fraction) or \
                self.spec.task not in ("classification", "reinforcement", "seq2seq"):
            return False
        ref = self._reference(self.held)  # needed for the held-out verdict anyway (kept)
        return bool(ref) and top1_matches(ref[0][0], ref[0][0]) is not None

    @property
    def by_agreement(self) -> bool:
        """Without a metric, whether the loss is top-1 disagreement (class scores) rather than relative error."""
        return self.spec.task in ("classification", "reinforcement", "seq2seq")

    def budget(self, max_drop: float, max_rel_error: float) -> float:
        """The candidates' budget in the units of `loss`: `--max-drop` metric points (or points of top-1
        disagreement); without a metric or class scores, the verification's relative-error bound in percent, so
        that the search and the verdict judge the same thing (a 1.4% error is then within budget and passes); a
        larger --max-drop still loosens it (--max-drop 100: no search)."""
        return max_drop if self.uses_metric or self.by_agreement else max(max_drop, round(100.0 * max_rel_error, 6))

    def budget_text(self, max_drop: float, max_rel_error: float) -> str:
        if self.uses_metric:
            return f"{max_drop:g}-point {self.spec.metric} budget"
        if self.by_agreement:
            return f"{max_drop:g}-point budget of top-1 disagreement with fp32 (no task metric)"
        if max_drop > 100.0 * max_rel_error:
            return f"relative error budget of {max_drop:g}% vs fp32 (no task metric; --max-drop)"
        return f"relative error budget of {100.0 * max_rel_error:g}% vs fp32 (no task metric; the verification bound)"

    def drop_column(self) -> str:
        """What the candidates' drop column holds: metric points, or, without a metric, says so."""
        if self.uses_metric:
            return f"val drop ({self.spec.metric} points)"
        return "no metric: disagreement % vs fp32" if self.by_agreement else "no metric: rel. error % vs fp32"

    def loss(self, runner: Any, split: str, before: float | None) -> float:
        """The search's drop on the probe split: metric points when possible, else parity points."""
        if self.uses_metric:
            drop = self.drop(before, self.metric(runner, split))
            if drop is not None:
                return drop
        return self.parity_drop(runner, self.probe)


INT8_GAIN = 1.1  # int8 must beat fp32 on its own runtime by this much to be worth shipping (as dlopt.report.decide)


def int8_gain(latency: dict[str, float], backend: str, layers_int8: int, layers_float: int) -> dict[str, Any]:
    """What int8 itself brings: its speed-up over fp32 on the same runtime (ONNX Runtime int8 vs the fp32 ONNX
    file; eager for torch), apart from what the runtime brings over eager PyTorch, and whether it is worth
    shipping. `latency` holds "quantized", "eager fp32" and the same-runtime fp32 reference (ms at batch 1)."""
    ref = {"onnxruntime": "onnxruntime fp32", "openvino": "openvino fp32"}.get(backend, "eager fp32")
    q, fp32 = latency.get("quantized"), latency.get(ref)
    same = round(fp32 / q, 3) if q and fp32 else None
    runtime = round(latency["eager fp32"] / fp32, 3) if fp32 and ref != "eager fp32" and latency.get("eager fp32")         else None
    total = layers_int8 + layers_float
    reasons = []
    if same is not None and same < INT8_GAIN:
        reasons.append(f"{same:.2f}x over fp32 on {ref.removesuffix(' fp32')} (under {INT8_GAIN:g}x)")
    if total and layers_int8 * 2 < total:
        reasons.append(f"only {layers_int8} of {total} layers {'is' if layers_int8 == 1 else 'are'} int8")
    worth = same is not None and same >= INT8_GAIN
    fp32_file = "the fp32 ONNX file" if ref == "onnxruntime fp32" else "the fp32 IR" if ref == "openvino fp32"         else "the fp32 model"
    verdict = None if worth else f"int8 brings nothing here ({'; '.join(reasons) or 'not timed'}): ship {fp32_file}"
    if worth and reasons:
        verdict = f"int8 gains {same:.2f}x over fp32 on {ref.removesuffix(' fp32')} although {reasons[-1]}"
    return {"reference": ref, "speedup_vs_fp32_b1": same, "runtime_speedup_vs_eager_b1": runtime,
            "int8_worthwhile": worth, "int8_verdict": verdict}


def failure_line(report: dict[str, Any]) -> str:
    """One line for a quantize report that failed verification: which check, the figures, what they were judged
    on, and what to try next (the CLI's error line; the matrix quotes it)."""
    ver = report.get("verification") or {}
    task = [f"{c.get('criterion')} failed: {_figure(c, report)}" for c in (ver.get("task") or {}).values()
            if isinstance(c, dict) and c.get("failure")]
    figures = ", ".join(f"{k.replace('_', ' ')} {report[k]:.3g}" for k in ("top1_agreement", "relative_error")
                        if isinstance(report.get(k), int | float))
    held = f" ({figures}" + (f"; {report['accuracy_basis']}" if report.get("accuracy_basis") else "") + ")"
    parts = ["; ".join(task) + held] if task else []
    shapes = ver.get("shapes") or {}
    if shapes and not shapes.get("passed", True):
        parts.append(_sweep_failure(shapes))
    said = "; ".join(parts) or "verification failed" + held
    search = report.get("search") or {}
    tries = []
    if str(search.get("stopped", "")).startswith("not searched"):
        tries.append("--max-drop 1 (the accuracy-aware search keeps the most sensitive layers in float)")
    elif report.get("kept_float"):
        said += f"; {len(report['kept_float'])} layer(s) were already kept in float"
    if str((report.get("calibration") or {}).get("source", "")).startswith("random"):
        tries.append("--inputs FILE.npz (calibrate on real inputs, not random ones)")
    tries.append("--method fp16, or deploy the fp32 export")
    return f"{said}; try {', or '.join(tries)}"


def _figure(check: dict[str, Any], report: dict[str, Any]) -> str:
    """The measured value a task check failed on: the report's own figure where the criterion names it (a check
    may record another number as its failure, e.g. the disagreement in percent), else what the check recorded."""
    criterion = str(check.get("criterion", ""))
    for key, words in (("top1_agreement", "top-1 agreement"), ("relative_error", "relative error")):
        if criterion.startswith(words) and isinstance(report.get(key), int | float):
            return f"{report[key]:.3g}"
    return str(check["failure"])


def _sweep_failure(shapes: dict[str, Any]) -> str:
    """The shape sweep's first failure as its verify report states it: the check, the shape, the output, why."""
    crit = shapes.get("criterion") or "its check"
    fails = [f for f in shapes.get("failures") or [] if isinstance(f, list | tuple) and len(f) == 3]
    if not fails:
        return f"the shape sweep failed ({crit})"
    (where, output, why), more = fails[0], f" (and {len(fails) - 1} more)" if len(fails) > 1 else ""
    return f"the shape sweep ({crit}) failed at {where}: {output}: {why}{more}"
