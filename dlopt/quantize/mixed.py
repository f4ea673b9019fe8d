"""Repair an int8 model that breaks the accuracy budget, instead of only giving a verdict.

When the plain search (dlopt.quantize.accuracy, or NNCF's accuracy control) ends over budget, `repair`:

1. tries the known whole-model repairs on the candidate's backend, each recorded: per-channel weights (when the
   candidate was per-tensor), NNCF's full bias correction (OpenVINO), SmoothQuant where the graph has MatMul
   layers (NNCF; ONNX Runtime's needs Intel Neural Compressor, else the attempt says so);
2. ranks the layers by what quantizing each one alone costs against fp32 on held-out inputs (dlopt.quantize.
   sensitivity: top-1 disagreement, no labels needed), on ONNX Runtime, within its share of the search budget
   (`rank_deadline`: the rest is kept for step 3, whose first float attempt is made whatever the time);
3. keeps the fewest most sensitive layers in higher precision until the validation drop is within budget less its
   sampling margin (dlopt.quantize.accuracy.Margin): float (ONNX Runtime `nodes_to_exclude`, OpenVINO NNCF ignored
   scope) first, each backend in an equal share of the time left, then 16-bit activations for them (ONNX Runtime
   QDQ) with what remains: ONNX Runtime's CPU provider has no 16-bit kernels, so a layer with 16-bit activations
   runs in float between Q/DQ nodes, never faster and less exact than the float layer, only smaller on disk
   (dlopt.quantize.fewest: how the count is searched);
4. times every candidate within that interleaved at batch 1 on one thread (with the all-int8 candidate, eager
   fp32 and ONNX Runtime fp32) and keeps the fastest; with none, the smallest drop, said so. When the one kept is
   not faster than ONNX Runtime fp32, dlopt.quantize.slow_ops says which operators cost more in int8.

`build_mixed(target, cfg, work)` is the same search for a caller that holds no quantize session (`dlopt optimize`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dlopt.quantize.accuracy import Margin, margin_for
from dlopt.quantize.config import Method, QBackend, QuantFormat, QuantizeConfig
from dlopt.quantize.fewest import fewest, impossible
from dlopt.quantize.judge import INT8_GAIN
from dlopt.quantize.recipe import Built
from dlopt.quantize.repair_record import Repair, kept, modules
from dlopt.quantize.repairs import Variant, build_variant, whole_model

ALL_INT8 = "all int8 (over budget)"
ACT16_LATE = ("the search budget was spent on the float fallback, tried first: ONNX Runtime's CPU provider runs a "
              "layer with 16-bit activations in float between Q/DQ nodes, so it is never faster than that layer in "
              "float and only smaller on disk")
# The ranking stops early enough to leave the fewest-layers search the larger of these (on 3 of 16 torchvision
# models at a 90 s budget the ranking took it all and no layer was ever tried in float).
SEARCH_SHARE = 0.4  # of the search budget
SEARCH_BUILDS = 4  # builds, at the mean cost of those made so far


@dataclass
class _Run:
    s: Any  # dlopt.quantize.session.Session
    before_val: float | None
    deadline: float
    progress: Callable[[str], None]
    rec: Repair
    built: dict[str, tuple[Built, float]] = field(default_factory=dict)  # label -> (built, val drop)
    _margin: Margin | None = None  # set at the first score: a metric that cannot run an artifact turns to parity

    def attempt(self, v: Variant, what: str) -> float | None:
        """Build and score one variant; None when it failed (recorded with why)."""
        self.progress(f"repair: {what}")
        t0 = time.monotonic()
        try:
            b = build_variant(self.s, v)
        except Exception as exc:  # noqa: BLE001 -- a quantizer failing on one variant must not end the repair
            self.rec.attempts.append({"repair": what, "recipe": v.label, "failed": f"{type(exc).__name__}: "
                                      f"{' '.join(str(exc).split())[:200]}"})
            return None
        drop = self.s.judge.loss(b.runner, "val", self.before_val)
        self.built[v.label] = (b, drop)
        self._forget()
        self.rec.attempts.append({"repair": what, "recipe": v.label, "keep_float": list(v.keep_float),
                                  "act16": list(v.act16), "val_drop": drop,
                                  "within_budget": drop is None or drop <= self.margin.budget,
                                  "within_margin": self.ok(drop),
                                  "layers_int8": len(b.quantized_layers), "seconds": round(time.monotonic() - t0, 2)})
        return drop

    def _forget(self) -> None:
        """Keep only what the repair can still choose (each variant holds an ONNX Runtime session: a mobilenet_v2
        repair kept 7.8 GB alive): the first attempt (every layer int8), those within budget, the smallest drop."""
        first = next(iter(self.built))
        least = min(self.built, key=lambda k: self.built[k][1])
        for label in [k for k, (_, d) in self.built.items() if k not in (first, least) and not self.ok(d)]:
            del self.built[label]

    @property
    def margin(self) -> Margin:
        if self._margin is None:
            self._margin = margin_for(self.s.judge, self.s.judge.budget(self.s.cfg.max_drop, self.s.cfg.max_rel_error))
            self.rec.margin = self._margin.to_json()
        return self._margin

    def ok(self, drop: float | None) -> bool:
        """Whether a candidate may be chosen: its drop within the budget less the sampling margin."""
        return self.margin.holds(drop)

    def late(self, until: float | None = None) -> bool:
        return time.monotonic() > min(self.deadline, until or self.deadline)

    def builds_left(self, until: float) -> float:
        """How many more builds (at the mean cost of those made so far) fit before `until`."""
        costs = [a["seconds"] for a in self.rec.attempts if "seconds" in a]
        mean = sum(costs) / len(costs) if costs else 0.0
        left = min(self.deadline, until) - time.monotonic()
        return left / mean if mean > 0 else float("inf")


def _backends(s: Any, base: Variant) -> list[QBackend]:
    from dlopt.quantize.choose import available

    if base.method != Method.STATIC:
        return [base.backend]
    here = available(tuple(dict.fromkeys((base.backend, *s.cfg.auto_backends))))[0] if s.cfg.method == Method.AUTO \
        else (base.backend,)
    return [b for b in here if b in (QBackend.ONNXRUNTIME, QBackend.OPENVINO)] or [base.backend]


def _rank(r: _Run, base: Variant, progress: Callable[[str], None]) -> list[str]:
    from dlopt.quantize.sensitivity import held_out, rank_alone

    ort = Variant(QBackend.ONNXRUNTIME, base.method, QuantFormat.QDQ, base.per_channel)
    full = build_variant(r.s, ort)
    layers = _order(r, full, list(full.quantized_layers), progress)
    costs, r.rec.unranked = rank_alone(lambda v: build_variant(r.s, v), ort, layers, r.s.judge,
                                       held_out(r.s.judge.probe), rank_deadline(r), progress)
    r.rec.ranked, names = len(costs), modules(r.s)
    r.rec.ranking = [{**c.to_json(), "module": names.get(c.layer)} for c in costs]
    ranked = [c.layer for c in costs]
    return ranked + [x for x in layers if x not in ranked]


def _order(r: _Run, full: Built, layers: list[str], progress: Callable[[str], None]) -> list[str]:
    """The layers in the order the ranking scores them (sensitivity.scoring_order), or graph order, said why."""
    from dlopt.quantize.sensitivity import held_out, scoring_order

    if r.s.fp32 is None:
        r.rec.order = "graph order (no fp32 ONNX file to compare layer outputs with)"
        return layers
    progress("ordering the layers by where the all-int8 file's error grows")
    try:
        order = scoring_order(r.s.fp32.prepared(), full.path, layers, held_out(r.s.judge.probe))
    except Exception as exc:  # noqa: BLE001 -- a tap ORT cannot run: the ranking still runs, in graph order
        r.rec.order = f"graph order (the layer outputs could not be compared: {type(exc).__name__}: {exc})"[:300]
        return layers
    r.rec.order = "by the growth of the all-int8 file's relative error across each layer" if order != layers \
        else "graph order (no layer's tensors could be tapped in both files)"
    return order


def rank_deadline(r: _Run) -> float:
    """When the ranking must stop: early enough to leave the fewest-layers search SEARCH_SHARE of the budget, or
    SEARCH_BUILDS builds at the mean cost of the attempts so far, whichever is larger (and no more than is left)."""
    now = time.monotonic()
    costs = [a["seconds"] for a in r.rec.attempts if "seconds" in a]
    builds = SEARCH_BUILDS * sum(costs) / len(costs) if costs else 0.0
    r.rec.reserve_s = round(min(max(0.0, r.deadline - now), max(SEARCH_SHARE * r.s.cfg.search_budget_s, builds)), 2)
    return r.deadline - r.rec.reserve_s


def _choose(r: _Run, plain: Built) -> tuple[Built, float] | None:
    from dlopt.quantize.choose import measure
    from dlopt.quantize.ort_quant import runner_for

    ok = {k: v for k, v in r.built.items() if r.ok(v[1])}
    if not ok:
        return None
    s, example = r.s, r.s.example()
    fp32 = runner_for(s.fp32.raw()) if s.fp32 is not None else None
    extra = {"onnxruntime fp32": lambda: fp32(*example)} if fp32 else {}
    r.progress(f"timing {len(ok)} repaired candidate(s) interleaved at batch 1, one thread")
    all_int8 = next(iter(r.built.values()))[0] if r.built else plain  # the first attempt: every layer int8
    ms = measure({**{k: b for k, (b, _) in ok.items()}, ALL_INT8: all_int8}, s.module, example,
                 s.cfg.timing_budget_s, extra)
    best = min(ok, key=lambda k: ms[k])
    r.rec.latency_ms_b1, r.rec.chosen = ms, best
    r.rec.speed = f"{best}: {ms[best]:.3g} ms at batch 1 against {ms[ALL_INT8]:.3g} ms with every layer int8 " \
                  f"({ms[best] / ms[ALL_INT8]:.2f}x the time)"
    fp32_ms = ms.get("onnxruntime fp32")
    slow = fp32_ms is not None and ms[best] * INT8_GAIN > fp32_ms  # the bar the quantize verdict applies too
    if fp32_ms is not None:
        r.rec.speed += f"; ONNX Runtime fp32 {fp32_ms:.3g} ms" + (
            ": the repaired int8 file is not faster than fp32" if ms[best] >= fp32_ms else
            f": the repaired int8 file is not faster than fp32 by the {INT8_GAIN:g}x int8 must gain to be worth "
            f"shipping ({fp32_ms / ms[best]:.2f}x)" if slow else "")
    if slow:
        from dlopt.quantize.slow_ops import for_session

        r.progress("profiling the int8 and fp32 files: which operators cost more in int8")
        r.rec.slow_ops = for_session(s, ok[best][0], {"int8": ms[best], "fp32": ms["onnxruntime fp32"]})
    return ok[best]


def repair(s: Any, plain: Built, before_val: float | None, progress: Callable[[str], None]) -> tuple[Built, Repair]:
    """Known repairs, then the fewest sensitive layers in higher precision; the fastest within budget."""
    t0 = time.monotonic()
    r = _Run(s, before_val, t0 + s.cfg.search_budget_s, progress, Repair())
    base = Variant.of(plain.recipe).keeping(())
    if len(plain.quantized_layers) + len(plain.recipe.keep_float) < 2:
        r.rec.stopped = (f"no layer can stay in float: the model has {len(plain.quantized_layers)} int8 layer(s), "
                         "and keeping it in float leaves no int8 at all")
        return plain, _done(r, t0)
    start = whole_model(r, base, plain, r.attempt(base, "none: all layers int8 (the starting point)"))
    ranked = _rank(r, start, progress)
    backends = _backends(s, start)
    for i, backend in enumerate(backends):  # at least one float attempt on whatever ranking there is, each backend
        share = time.monotonic() + max(0.0, r.deadline - time.monotonic()) / (len(backends) - i)
        fewest(r, replace(start, backend=backend).keeping, ranked, f"float fallback ({backend})", share, force=True)
    if start.backend == QBackend.ONNXRUNTIME and start.method == Method.STATIC and start.quant_format == QuantFormat.QDQ:
        if r.late():
            r.rec.attempts.append({"repair": "16-bit activations (ORT)", "skipped": ACT16_LATE})
        else:
            fewest(r, lambda top: replace(start, act16=top), ranked, "16-bit activations (ORT)")
    chosen = _choose(r, plain)
    if chosen is None:
        best_label = min(r.built, key=lambda k: r.built[k][1]) if r.built else None
        r.rec.stopped = (impossible(r, ranked) or "no repair met the budget" + (
            " before the search budget ran out" if r.late() else "")) + (
            f"; smallest drop: {best_label}" if best_label else "")
        out = r.built[best_label][0] if best_label and r.built[best_label][1] < _drop(s, plain, before_val) else plain
    else:
        out, r.rec.within_budget = chosen[0], True
        r.rec.stopped = f"{r.rec.chosen}: the fastest repair within the " \
                        f"{s.judge.budget_text(s.cfg.max_drop, s.cfg.max_rel_error)}"
    r.rec.stopped += r.rec.margin_note() + r.rec.partial_note()
    r.rec.kept = kept(r.rec, s, out)
    return out, _done(r, t0)


def repair_search(s: Any, built: Built, search: Any, before_val: float | None,
                  progress: Callable[[str], None]) -> tuple[Built, Any]:
    """The quantize stage's failure path: `repair` when the plain search (`search`, an accuracy.Search) ended over
    budget with int8 layers to work on; the search record gains `repair`, and the verdict the repair's."""
    if search.within_budget and s.cfg.is_int8:  # no repair; says which operators make int8 not faster, if so
        from dlopt.quantize.slow_ops import for_session

        search.slow_ops = for_session(s, built)
    if search.within_budget or not s.cfg.is_int8 or s.cfg.max_fallback_layers == 0:
        return built, search
    progress(f"drop {search.final_drop} still over budget after the plain search: repairing")
    fixed, rec = repair(s, built, before_val, progress)
    search.repair = rec.to_json()
    if rec.within_budget:
        search.final_drop, search.within_budget = _drop(s, fixed, before_val), True
    search.stopped = f"{search.stopped}; repair: {rec.stopped}"
    return fixed, search


def _drop(s: Any, built: Built, before_val: float | None) -> float:
    return s.judge.loss(built.runner, "val", before_val)


def _done(r: _Run, t0: float) -> Repair:
    r.rec.seconds = round(time.monotonic() - t0, 2)
    return r.rec


@dataclass(frozen=True)
class MixedCandidate:
    built: Built  # the file (in `work`), its recipe (keep_float / act16 name the layers in higher precision), runner
    val_drop: float | None  # points lost on the validation split
    repair: Repair | None  # None when plain int8 already met the budget


def build_mixed(target: Any, cfg: QuantizeConfig, work: Path,
                progress: Callable[[str], None] | None = None) -> MixedCandidate:
    """A mixed-precision int8 candidate of `target` (a dlopt.contract.target.Target) within `cfg.max_drop`: static
    int8 on `cfg.backend`, repaired when over budget. Files go to `work` (scratch the caller owns)."""
    from dlopt.quantize.session import open_session

    say = progress or (lambda _m: None)
    s = open_session(target, cfg, work, True, say)
    before = s.judge.metric(None, "val")
    plain = build_variant(s, Variant(cfg.backend, Method.STATIC, cfg.quant_format, cfg.per_channel))
    drop = _drop(s, plain, before)
    if margin_for(s.judge, s.judge.budget(cfg.max_drop, cfg.max_rel_error)).holds(drop):
        return MixedCandidate(plain, drop, None)
    built, rec = repair(s, plain, before, say)
    return MixedCandidate(built, _drop(s, built, before), rec)
