"""`run_quantize`: the quantize stage on a run's model or one of its variants (a Target its caller resolved),
builds the int8 (or half) artifact by measurement, keeps layers in float until the accuracy budget holds,
verifies it, and writes <run>/<name>/model.onnx|.pt2 with quantize_report.json."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlopt.contract.stage import Outcome, Section, register_stage
from dlopt.contract.target import Check, Target, TargetOptions, as_target
from dlopt.core.errors import UnsupportedError
from dlopt.core.staging import clean_quantize_scratch, pause_point, quantize_scratch_prefix
from dlopt.quantize.config import Method, QBackend, QuantizeConfig
from dlopt.quantize.recipe import backend, unsupported
from dlopt.quantize.session import Session, open_session

if TYPE_CHECKING:
    from dlopt.core.results import QuantizeReport

REPORT = "quantize_report.json"  # a dlopt.core.results.QuantizeReport


@dataclass(frozen=True)
class QuantizeOutcome(Outcome):
    artifact: Path  # the quantized file inside <run>/<name>/
    report: QuantizeReport  # what quantize_report.json (report_path) holds

    @property
    def result(self) -> dict[str, Any]:
        return self.report.to_json()

    @property
    def passed(self) -> bool:
        return bool(self.report.verified)

    def to_json(self) -> dict[str, Any]:
        return {**self.result, "run": str(self.run_dir), "artifact": str(self.artifact),
                "report": str(self.report_path)}


def quantize_check(cfg: QuantizeConfig) -> Check:
    """The support check `resolve_target` runs before a run directory is created: the spec allows quantize, and
    the method asked for (auto: the search picks among the methods the spec allows)."""
    def check(spec: Any) -> None:
        if (why := unsupported(spec, cfg.method)) is not None:
            how = "" if cfg.method == Method.AUTO or not spec.supports("quantize") else f" with {cfg.method}"
            raise UnsupportedError(f"{spec.name} cannot be quantized{how}: {why}")

    return check


def _backends(cfg: QuantizeConfig) -> tuple[QBackend, ...]:
    from dlopt.quantize.choose import available

    return available(cfg.auto_backends)[0] if cfg.method == Method.AUTO else (cfg.backend,)


def _references(s: Session) -> dict[str, Callable[[], Any]]:
    """Timed beside the candidates: each measured backend's fp32 reference (ONNX Runtime: the fp32 ONNX file)."""
    return {k: v for b in _backends(s.cfg) for k, v in backend(b).references(s).items()}


def _build(s: Session, progress: Callable[[str], None]) -> tuple[Any, dict[str, Any] | None, Any]:
    """Choose (auto) or build the asked recipe, then run the accuracy-aware search on it."""
    from dlopt.quantize.accuracy import Search, fallback
    from dlopt.quantize.choose import choose, data_free_split, recipes

    todo, last_resort = data_free_split(recipes(s.spec, s.cfg, _backends(s.cfg)), s.calib.source, s.cfg.method)
    before_val = s.judge.metric(None, "val")
    if s.cfg.method == Method.AUTO:
        from dlopt.quantize.choose import available, backends_note

        missing = available(s.cfg.auto_backends)[1]
        s.notes += [missing] if missing else []
        budget = replace(s.cfg, max_drop=s.judge.budget(s.cfg.max_drop, s.cfg.max_rel_error))  # no metric: its unit
        built, auto = choose(todo, s.build, s.judge, before_val, budget, s.example(), s.has_int8, _references(s),
                             progress, last_resort, s.notes)
        auto["backends_note"] = backends_note(s.cfg.auto_backends, todo, last_resort, auto["candidates"])
    else:
        progress(f"building {todo[0].label}")
        built, auto = s.build(todo[0]), None
        if s.cfg.is_int8 and not s.has_int8(built):
            other = "dynamic" if todo[0].method == Method.STATIC else "static"
            raise UnsupportedError(f"{todo[0].label} converted no layer of {s.spec.name} to int8; "
                                   f"try --method {other}")
    if not s.cfg.is_int8:
        return built, auto, Search(stopped="not searched: half precision has no per-layer fallback here")
    # a backend's own accuracy-aware search first (OpenVINO: NNCF's accuracy control), else dlopt's layer search
    from dlopt.quantize.mixed import repair_search  # still over budget after the search: repair, not only a verdict

    if (controlled := backend(built.recipe.backend).search(s, built, before_val, progress)) is not None:
        built, search = repair_search(s, controlled[0], controlled[1], before_val, progress)
        return built, auto, search
    built, search = fallback(s.build, built, s.judge, before_val, s.judge.budget(s.cfg.max_drop, s.cfg.max_rel_error),
                             s.cfg.max_fallback_layers,
                             s.cfg.search_budget_s, progress)
    built, search = repair_search(s, built, search, before_val, progress)
    return built, auto, search


def _verify(s: Session, path: Path) -> dict[str, Any]:
    """The shape sweep (runs, finite) through dlopt.verify, on the run's test data where it feeds the model."""
    from dlopt.runtime.formats import format_of
    from dlopt.runtime.quiet import quiet_deprecations
    from dlopt.verify import VerifyConfig, verify_artifacts
    from dlopt.verify.criteria import FiniteOutputs
    from dlopt.verify.realdata import real_cases

    config = VerifyConfig(criterion=FiniteOutputs())
    with quiet_deprecations():
        cases = real_cases(s.target.run, s.spec, s.model_cfg, config)
        fmt = format_of(path).format.value
        report = verify_artifacts(s.target.model, s.spec, s.model_cfg, {fmt: path}, config, trust_pickle=True,
                                  cases=cases)[fmt]
    return report.to_dict()


def _task_checks(s: Session, before: float | None, after: float | None, parity: dict[str, Any]) -> dict[str, Any]:
    """Metric change on the test split when there is a metric; top-1 agreement for classifier-shaped outputs;
    relative error only when neither applies (the metric is the better judge of a regression or a generator)."""
    from dlopt.verify.criteria import MetricChange

    checks: dict[str, Any] = {}
    if before is not None and after is not None:
        crit = MetricChange(s.spec.metric, s.cfg.max_drop, s.judge.evaluator.higher_is_better, s.judge.fraction)
        checks["metric_change"] = {"criterion": crit.name, "failure": crit.judge_metrics(before, after)}
    if parity.get("top1_agreement") is not None:
        ok = parity["top1_agreement"] >= s.cfg.min_agreement
        checks["top1_agreement"] = {"criterion": f"top-1 agreement >= {s.cfg.min_agreement:g}",
                                    "failure": None if ok else f"{parity['top1_agreement']:.4f}"}
    elif "metric_change" not in checks:  # no metric to judge by: the outputs' relative error is the task check
        ok = parity["relative_error"] <= s.cfg.max_rel_error
        checks["relative_error"] = {"criterion": f"relative error <= {s.cfg.max_rel_error:g}",
                                    "failure": None if ok else f"{parity['relative_error']:.4g}"}
    return checks


def _fp32_bytes(s: Session) -> int | None:
    """The fp32 file of the same format (ONNX), else the fp32 weights' bytes."""
    if s.fp32 is not None and any(backend(b).fp32_reference for b in _backends(s.cfg)):
        return s.fp32.raw().stat().st_size
    return sum(p.numel() * p.element_size() for p in s.module.state_dict().values())


def layer_counts(built: Any) -> dict[str, Any]:
    """How many layers the file holds in int8 and in float (counted in the written graph), which stayed float,
    and which of those the accuracy-aware search kept in float (the others the method does not convert)."""
    floats = list(built.float_layers)
    out: dict[str, Any] = {"layers_int8": len(built.quantized_layers), "layers_float": len(floats),
                           "float_layers": floats, "kept_float": list(built.recipe.keep_float)}
    others = [n for n in floats if n not in built.recipe.keep_float]
    if others and built.recipe.method == Method.DYNAMIC:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        out["float_why"] = (f"dynamic int8 converts Linear/MatMul/LSTM/attention layers only; {len(others)} other "
                            f"layer(s) compute in float: {shown}")
    elif others:
        out["float_why"] = f"{len(others)} layer(s) the quantizer left in float"
    return out


def _result(s: Session, built: Any, auto: Any, search: Any, out: Path, seconds: float,
            progress: Callable[[str], None]) -> QuantizeReport:
    from dlopt.core.results import QuantizeReport
    from dlopt.quantize.choose import measure

    before, after = s.judge.metric(None, "test"), s.judge.metric(built.runner, "test")
    parity = s.judge.parity(built.runner, s.judge.held)
    progress("verifying")
    sweep = _verify(s, out)
    checks = _task_checks(s, before, after, parity)
    from dlopt.quantize.judge import int8_gain
    from dlopt.quantize.ov_quant import fp32_reference

    latency = measure({"quantized": built}, s.module, s.example(), s.cfg.timing_budget_s,
                      {**_references(s), **fp32_reference(s, built)})  # fp32 on the quantized file's own runtime
    fp32_bytes = _fp32_bytes(s)
    basis = (f"{s.spec.metric} on the held-out test split" if s.judge.uses_metric else
             f"parity with fp32 on {s.judge.basis or _held_basis(s.calib.source)}"
             + _why_no_metric(s.judge.metric_broken))
    verified = sweep["passed"] and all(c["failure"] is None for c in checks.values())
    counts = layer_counts(built)
    gain = int8_gain(latency, str(built.recipe.backend), len(built.quantized_layers), len(built.float_layers)) \
        if s.cfg.is_int8 else {}
    if gain.get("int8_verdict") and auto:  # the pick says what int8 brought, not only which candidate won
        auto = {**auto, "why": f"{auto['why']}; {gain['int8_verdict']}"}
    return QuantizeReport(
        arch=s.spec.name, stage=s.cfg.name, method=str(built.recipe.method), backend=str(built.recipe.backend),
        recipe=built.recipe.to_json(), chosen_by="auto" if auto else "asked", auto=auto, artifact=out.name,
        size_bytes={"fp32": fp32_bytes, "quantized": built.bytes,
                    "ratio": round(fp32_bytes / out.stat().st_size, 3) if fp32_bytes else None},
        metric=s.spec.metric, accuracy_basis=basis, metric_before=before, metric_after=after,
        drop_points=s.judge.drop(before, after), top1_agreement=parity["top1_agreement"],
        relative_error=parity["relative_error"], latency_ms_b1=latency,
        speedup_vs_eager_b1=round(latency["eager fp32"] / latency["quantized"], 3), threads=1,
        speedup_vs_fp32_b1=gain.get("speedup_vs_fp32_b1"), fp32_reference=gain.get("reference"),
        runtime_speedup_vs_eager_b1=gain.get("runtime_speedup_vs_eager_b1"),
        int8_worthwhile=gain.get("int8_worthwhile"), int8_verdict=gain.get("int8_verdict"),
        layers_int8=counts["layers_int8"], layers_float=counts["layers_float"],
        float_layers=tuple(counts["float_layers"]), kept_float=tuple(counts["kept_float"]),
        float_why=counts.get("float_why"), search=search.to_json(),
        calibration={"samples": s.calib.samples, "source": s.calib.source, "method": str(s.cfg.calibration_method)},
        verification={"shapes": sweep, "task": checks}, verified=verified, notes=(*s.notes, *built.notes),
        seconds=round(seconds, 2))


def run_quantize(target: Target | TargetOptions, cfg: QuantizeConfig,
                 progress: Callable[[str], None] | None = None) -> QuantizeOutcome:
    """Quantize the target into <run>/<cfg.name>/ and record the stage `cfg.name` in the run's manifest."""
    from dlopt.core.results import write_result
    from dlopt.runtime.formats import format_of

    step = progress or (lambda _msg: None)
    target = as_target(target, quantize_check(cfg))  # the caller resolved it with quantize_check (or passes options)
    run, t0 = target.run, time.perf_counter()
    final_dir = run.file(cfg.name)
    clean_quantize_scratch()  # scratch that killed quantize processes left in $TMPDIR
    # Staged, then swapped in as a whole: an existing variant stays complete (model + report) until the new one is.
    with run.stage(cfg.name, cfg.to_json(), inputs=[target.checkpoint], owns=(final_dir.name,)) as rec, \
            tempfile.TemporaryDirectory(prefix=quantize_scratch_prefix()) as work:
        calibrates = cfg.method in backend(cfg.backend).offers("CALIBRATED_METHODS")
        s = open_session(target, cfg, Path(work), calibrates, step)
        built, auto, search = _build(s, step)
        pause_point(cfg.name, "built")  # test-only hook: the scratch directory is in use here
        out = rec.path(final_dir.name, f"model{built.path.suffix}")
        rec.outputs += format_of(out).copy(built.path, out)  # with its companions (an IR's weights)
        result = _result(s, built, auto, search, out, time.perf_counter() - t0, step)
        shapes = {**result.verification["shapes"], "artifact": str(rec.final(out).relative_to(run.path))}
        result = replace(result, verification={**result.verification, "shapes": shapes})  # where it lands
        report = write_result(result, rec.path(final_dir.name, REPORT))
        rec.outputs += [out, report]
        rec.metrics.update({k: getattr(result, k) for k in ("method", "backend", "metric_before", "metric_after",
                                                            "drop_points", "top1_agreement", "speedup_vs_eager_b1",
                                                            "verified")})
        rec.metrics.update(kept_float=len(result.kept_float), layers_int8=result.layers_int8,
                           layers_float=result.layers_float)
    out, report = final_dir / out.name, final_dir / REPORT
    return QuantizeOutcome(out, result, stage=cfg.name, run_dir=run.path, report_path=report,
                           summary=dict(rec.metrics))


class QuantizeStage:
    name = "quantize"
    Config = QuantizeConfig
    section = Section(comment="dlopt quantize options")  # every option of `dlopt quantize`

    def check(self, spec: Any, config: QuantizeConfig | None = None) -> None:
        quantize_check(config or QuantizeConfig())(spec)

    def run(self, target: Any, config: QuantizeConfig, progress: Callable[[str], None] | None = None
            ) -> QuantizeOutcome:
        return run_quantize(target, config, progress)


STAGE = register_stage(QuantizeStage())


def _held_basis(calibration_source: str) -> str:
    """What the agreement verdict was judged on when no inputs file says it: the data's held-out split, or random."""
    return "held-out data" if calibration_source.startswith("train") else "random valid inputs"


def _why_no_metric(broken: str | None) -> str:
    if not broken:
        return ""
    return f" ({broken})" if broken.startswith("no task metric") else \
        f" (the metric could not run the artifact: {broken})"
