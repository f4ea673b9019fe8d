"""Repair an int8 model that breaks the accuracy budget, instead of only giving a verdict.

When the plain search (dlopt.quantize.accuracy, or NNCF's accuracy control) ends over budget, `repair`:

1. tries the known whole-model repairs on the candidate's backend, each recorded: per-channel weights (when the
   candidate was per-tensor), NNCF's full bias correction (OpenVINO), SmoothQuant where the graph has MatMul
   layers (NNCF; ONNX Runtime's needs Intel Neural Compressor, else the attempt says so);
2. ranks the layers by what quantizing each one alone costs against fp32 on held-out inputs (dlopt.quantize.
   sensitivity: top-1 disagreement, no labels needed), on ONNX Runtime;
3. keeps the fewest most sensitive layers in higher precision until the validation drop is within budget: 16-bit
   activations for them (ONNX Runtime QDQ), or float (ONNX Runtime `nodes_to_exclude`, OpenVINO NNCF ignored scope),
   the smallest count found by doubling, then bisecting;
4. times every candidate within budget interleaved at batch 1 on one thread (with the all-int8 candidate, eager
   fp32 and ONNX Runtime fp32) and keeps the fastest; with none within budget, the smallest drop, said so.

`build_mixed(target, cfg, work)` is the same search for a caller that holds no quantize session (`dlopt optimize`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dlopt.quantize.config import Method, QBackend, QuantFormat, QuantizeConfig
from dlopt.quantize.recipe import Built
from dlopt.quantize.repairs import Variant, build_variant, smooth_quant_missing

MATMUL_OPS = ("MatMul", "Gemm")
ALL_INT8 = "all int8 (over budget)"


@dataclass
class Repair:
    """What the repair did (the quantize report's `search.repair`)."""

    attempts: list[dict[str, Any]] = field(default_factory=list)  # every variant built, with its drop
    ranking: list[dict[str, Any]] = field(default_factory=list)  # layers by cost alone in int8, most costly first
    unranked: int = 0  # layers the time budget left unscored
    kept: list[dict[str, Any]] = field(default_factory=list)  # the chosen variant's layers in higher precision, why
    latency_ms_b1: dict[str, float] = field(default_factory=dict)
    speed: str = ""  # what keeping those layers cost in speed, in words
    chosen: str | None = None
    within_budget: bool = False
    stopped: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Run:
    s: Any  # dlopt.quantize.session.Session
    before_val: float | None
    deadline: float
    progress: Callable[[str], None]
    rec: Repair
    built: dict[str, tuple[Built, float]] = field(default_factory=dict)  # label -> (built, val drop)

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
                                  "act16": list(v.act16), "val_drop": drop, "within_budget": self.ok(drop),
                                  "layers_int8": len(b.quantized_layers), "seconds": round(time.monotonic() - t0, 2)})
        return drop

    def _forget(self) -> None:
        """Keep only what the repair can still choose (each variant holds an ONNX Runtime session: a mobilenet_v2
        repair kept 7.8 GB alive): the first attempt (every layer int8), those within budget, the smallest drop."""
        first = next(iter(self.built))
        least = min(self.built, key=lambda k: self.built[k][1])
        for label in [k for k, (_, d) in self.built.items() if k not in (first, least) and not self.ok(d)]:
            del self.built[label]

    def ok(self, drop: float | None) -> bool:
        return drop is None or drop <= self.s.judge.budget(self.s.cfg.max_drop, self.s.cfg.max_rel_error)

    def late(self) -> bool:
        return time.monotonic() > self.deadline


def _transformer_like(s: Any, built: Built) -> bool:
    """MatMul/Gemm layers outnumber convolutions among the int8 layers (SmoothQuant's case: transformer MatMuls)."""
    import onnx

    ops = {n.name: n.op_type for n in onnx.load(str(s.fp32.raw()), load_external_data=False).graph.node}
    kinds = [ops.get(n, "") for n in built.quantized_layers]
    return sum(k in MATMUL_OPS for k in kinds) > max(1, sum(k == "Conv" for k in kinds))


def _whole_model(r: _Run, base: Variant, plain: Built, base_drop: float | None) -> Variant:
    """Per-channel weights, bias correction, SmoothQuant on the whole model, each kept (for what follows) when it
    loses no more than the variant before it; or skipped, with why."""
    current, drop = base, base_drop if base_drop is not None else float("inf")

    def consider(v: Variant, what: str) -> None:
        nonlocal current, drop
        got = r.attempt(v, what)
        if got is not None and got <= drop:
            current, drop = v, got

    if base.method == Method.STATIC and not base.per_channel:
        consider(replace(current, per_channel=True), "per-channel weights")
    if base.backend == QBackend.OPENVINO:
        consider(replace(current, bias_correction=True), "bias correction (NNCF, full)")
    else:
        r.rec.attempts.append({"repair": "bias correction", "skipped": "ONNX Runtime's quantizer has no bias "
                               "correction (it is NNCF's, tried where the candidate is OpenVINO)"})
    if r.s.fp32 is None or not _transformer_like(r.s, plain):
        r.rec.attempts.append({"repair": "SmoothQuant", "skipped": "not a transformer: SmoothQuant moves activation "
                               "outliers of MatMul layers into their weights, and here convolutions dominate"})
    elif (missing := smooth_quant_missing(base.backend)) is not None:
        r.rec.attempts.append({"repair": "SmoothQuant", "skipped": missing})
    elif base.method == Method.STATIC:
        consider(replace(current, smooth_quant=True), "SmoothQuant")
    return current


def _fewest(r: _Run, make: Callable[[tuple[str, ...]], Variant], ranked: list[str], what: str) -> None:
    """The smallest k whose top-k layers in higher precision meet the budget: k = 1, 2, 4... then bisect."""
    top = max(1, len(ranked) - 1)  # all of them would be no int8 at all
    lo, hi, k = 0, None, 1
    while k <= top and not r.late():
        if r.ok(r.attempt(make(tuple(ranked[:k])), f"{what}: top {k}")):
            hi = k
            break
        lo, k = k, min(top, k * 2) if k < top else top + 1
    while hi is not None and hi - lo > 1 and not r.late():
        mid = (lo + hi) // 2
        if r.ok(r.attempt(make(tuple(ranked[:mid])), f"{what}: top {mid}")):
            hi = mid
        else:
            lo = mid


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
    layers = list(full.quantized_layers)
    costs, r.rec.unranked = rank_alone(lambda v: build_variant(r.s, v), ort, layers, r.s.judge,
                                       held_out(r.s.judge.probe), r.deadline, progress)
    modules = _modules(r.s)
    r.rec.ranking = [{**c.to_json(), "module": modules.get(c.layer)} for c in costs]
    ranked = [c.layer for c in costs]
    return ranked + [x for x in layers if x not in ranked]


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
    if "onnxruntime fp32" in ms:
        r.rec.speed += f"; ONNX Runtime fp32 {ms['onnxruntime fp32']:.3g} ms" + (
            ": the repaired int8 file is not faster than fp32" if ms[best] >= ms["onnxruntime fp32"] else "")
    return ok[best]


def _modules(s: Any) -> dict[str, str]:
    """ONNX node name -> the model's module it computes (dlopt.verify.layermap), so the report says which layer
    node_Conv_818 is; {} without an fp32 ONNX file."""
    import onnx

    from dlopt.verify.layermap import node_modules

    if s.fp32 is None:
        return {}
    names = [n for n, _ in s.module.named_modules()]
    return node_modules(onnx.load(str(s.fp32.raw()), load_external_data=False), names)


def _kept(r: _Run, built: Built) -> list[dict[str, Any]]:
    rank = {row["layer"]: (i, row) for i, row in enumerate(r.rec.ranking)}
    v, modules = Variant.of(built.recipe), _modules(r.s)
    out = []
    for layer, precision in [*((x, "16-bit activations") for x in v.act16), *((x, "float") for x in v.keep_float)]:
        i, row = rank.get(layer, (None, {}))
        if not row:
            cost = "not ranked before the time budget ran out (kept in graph order)"
        elif row.get("disagreement_points") is not None:
            cost = (f"quantized alone in int8 it costs {row['disagreement_points']:.3g} points of top-1 agreement "
                    f"with fp32 (output relative error {row['rel_error']:.3g}), rank {i + 1}")
        else:
            cost = f"quantized alone in int8 the output's relative error is {row['rel_error']:.3g}, rank {i + 1}"
        out.append({"layer": layer, "module": modules.get(layer), "precision": precision,
                    "rank": None if i is None else i + 1, "why": cost})
    return out


def repair(s: Any, plain: Built, before_val: float | None, progress: Callable[[str], None]) -> tuple[Built, Repair]:
    """Known repairs, then the fewest sensitive layers in higher precision; the fastest within budget."""
    t0 = time.monotonic()
    r = _Run(s, before_val, t0 + s.cfg.search_budget_s, progress, Repair())
    base = Variant.of(plain.recipe).keeping(())
    if len(plain.quantized_layers) + len(plain.recipe.keep_float) < 2:
        r.rec.stopped = (f"no layer can stay in float: the model has {len(plain.quantized_layers)} int8 layer(s), "
                         "and keeping it in float leaves no int8 at all")
        return plain, _done(r, t0)
    start = _whole_model(r, base, plain, r.attempt(base, "none: all layers int8 (the starting point)"))
    ranked = _rank(r, start, progress)
    if start.backend == QBackend.ONNXRUNTIME and start.method == Method.STATIC and start.quant_format == QuantFormat.QDQ:
        _fewest(r, lambda top: replace(start, act16=top), ranked, "16-bit activations (ORT)")
    for backend in _backends(s, start):
        _fewest(r, replace(start, backend=backend).keeping, ranked, f"float fallback ({backend})")
    chosen = _choose(r, plain)
    if chosen is None:
        best_label = min(r.built, key=lambda k: r.built[k][1]) if r.built else None
        r.rec.stopped = ("no repair met the budget" + (" before the search budget ran out" if r.late() else "") +
                         (f"; smallest drop: {best_label}" if best_label else ""))
        out = r.built[best_label][0] if best_label and r.built[best_label][1] < _drop(s, plain, before_val) else plain
    else:
        out, r.rec.within_budget = chosen[0], True
        r.rec.stopped = f"{r.rec.chosen}: the fastest repair within the " \
                        f"{s.judge.budget_text(s.cfg.max_drop, s.cfg.max_rel_error)}"
    r.rec.kept = _kept(r, out)
    return out, _done(r, t0)


def repair_search(s: Any, built: Built, search: Any, before_val: float | None,
                  progress: Callable[[str], None]) -> tuple[Built, Any]:
    """The quantize stage's failure path: `repair` when the plain search (`search`, an accuracy.Search) ended over
    budget with int8 layers to work on; the search record gains `repair`, and the verdict the repair's."""
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
    if drop is None or drop <= s.judge.budget(cfg.max_drop, cfg.max_rel_error):
        return MixedCandidate(plain, drop, None)
    built, rec = repair(s, plain, before, say)
    return MixedCandidate(built, _drop(s, built, before), rec)
