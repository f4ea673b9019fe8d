"""`run_optimize`: one measured search over prune ratio, residual blocks, precision, runtime and threads on a run's
model, then the pick, re-verified and recorded as the stage `optimize` (files in <run>/optimized/,
optimize_report.json)."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.contract.target import Check, Target
from dlopt.core.fileio import write_json_atomic
from dlopt.optimize.cache import FOLDER, Cache, shipped_with
from dlopt.optimize.config import OptimizeConfig
from dlopt.optimize.record import REPORT, SHIPPED, OptimizeReport
from dlopt.optimize.search import Context, Events

CONFIG = "config.json"  # <run>/optimize/config.json: the options the study started with (what --resume reads)
PLOT, SUMMARY = "optimize_pareto.png", "optimize_report.md"  # beside optimize_report.json in <run>/optimized/


@dataclass(frozen=True)
class OptimizeOutcome:
    run_dir: Path
    report: OptimizeReport
    report_path: Path

    @property
    def reached(self) -> bool:
        return self.report.reached

    def to_json(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "report_path": str(self.report_path), **self.report.to_json()}


def optimize_check(cfg: OptimizeConfig) -> Check:
    """The spec leaves something to search (before any run directory is created)."""
    def check(spec: Any) -> None:
        from dlopt.optimize.space import build_space

        build_space(spec, cfg)

    return check


def short_fingerprint() -> dict[str, Any]:
    """The picking machine, as each trial and the report record it."""
    from dlopt.core.environment import cpu_info, fingerprint

    env = fingerprint()
    return {"host": socket.gethostname(), "cpu": cpu_info(), "git_commit": env.get("git_commit"),
            "packages": {k: v for k, v in env["packages"].items() if k in ("torch", "onnxruntime", "openvino")}}


def _context(target: Target, cfg: OptimizeConfig, events: Events) -> Context:
    from dlopt.models.registry import entry_module, make_inputs
    from dlopt.optimize.judge import Judge
    from dlopt.optimize.space import build_space
    from dlopt.optimize.timing import Timer

    events.step("loading the run's data and scoring fp32")
    cache = Cache(target.run, cfg, events.step)
    judge = Judge(target, Path(cfg.inputs) if cfg.inputs else None, cfg.data_limit, cfg.seed)
    module = entry_module(target.model, target.spec).eval()
    timer = Timer(module, make_inputs(target.spec, target.config, cfg.goal.batch_size, seed=cfg.seed))
    space = build_space(target.spec, cfg, _blocks(target, cfg, module))
    return Context(target, cfg, space, cache, judge, timer, cache.base(), short_fingerprint(), events)


def _blocks(target: Target, cfg: OptimizeConfig, module: Any) -> int:
    """How many residual blocks depth pruning could remove from the run's model (0 when no depth is searched)."""
    if not any(cfg.depth_shares) or not target.spec.supports("prune:structured"):
        return 0
    from dlopt.models.registry import make_inputs
    from dlopt.prune.depth import residual_blocks

    return len(residual_blocks(target.model, module, make_inputs(target.spec, target.config, 1, seed=cfg.seed)))


@contextlib.contextmanager
def _pick_lock(folder: Path) -> Any:
    """Workers sharing the run pick one after the other (each re-times and records the stage in turn)."""
    with open(folder / ".pick.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run_optimize(target: Target, cfg: OptimizeConfig, events: Events | None = None) -> OptimizeOutcome:
    """Search (continuing the study if it exists), pick, verify and record. The caller checks `reached`."""
    return optimize_in(target.run.path, cfg, lambda ev: _context(target, cfg, ev), events)


def optimize_in(run_path: Path, cfg: OptimizeConfig, make_context: Callable[[Events], Context],
                events: Events | None = None) -> OptimizeOutcome:
    """The study of the run at `run_path` over what `make_context` builds, judges and times: search, pick, verify,
    record (the run's own model, or a file made elsewhere: dlopt.optimize.onnx_source)."""
    from dlopt.optimize.study import fail_dead, open_storage, open_study, storage_url

    t0, events = time.monotonic(), events or Events()
    folder = run_path / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    url = storage_url(run_path, cfg)
    storage = open_storage(url)
    study = open_study(storage, cfg)
    if not (folder / CONFIG).is_file():
        write_json_atomic(folder / CONFIG, cfg.to_json())
    ctx = make_context(events)
    from dlopt.optimize.study import warm_start

    killed = fail_dead(study, storage)
    warm_start(study, ctx.space, cfg, ctx.first)
    ctx.cache.sweep()  # what killed builds staged: never used, removed now
    from dlopt.optimize.search import search

    summary = {**search(ctx, study), "killed_trials_marked_failed": killed}
    with _pick_lock(folder):
        return _finish(ctx, study, url, summary, t0)


def _finish(ctx: Context, study: Any, url: str, summary: dict[str, Any], t0: float) -> OptimizeOutcome:
    from dlopt.optimize.pick import finalists, ranked, retime, unreachable
    from dlopt.optimize.report_rows import front_numbers, study_counts, trial_rows
    from dlopt.optimize.study import completed, shown_url

    cfg, goal = ctx.cfg, ctx.cfg.goal
    done = completed(study)
    chosen = retime(ctx, finalists(ctx, done))
    pick, verification, notes = None, None, []
    for f in ranked(goal, chosen):
        verification = (ctx.verify or _verify)(ctx, f.row)
        if verification["passed"]:
            pick = f
            break
        notes.append(f"{f.row['label']} was passed over: its parity check failed ({verification['summary']})")
    rows = [t.user_attrs["result"] for t in done if "result" in t.user_attrs]
    reason = _rule(goal.kind) if pick else unreachable(goal, rows, chosen)
    report = OptimizeReport(
        arch=ctx.target.spec.name, goal=cfg.to_json()["goal"], config=cfg.to_json(),
        study={"storage": shown_url(url) if cfg.storage else f"sqlite: {FOLDER}/study.db (inside the run)",
               "name": cfg.study, **study_counts(study)}, space=ctx.space.to_json(),
        basis=ctx.judge.basis, baseline={"metric": ctx.judge.before, "metric_name": ctx.target.spec.metric,
                                         "speed_reference": ctx.baseline_key,
                                         **({"eager": f"n/a ({ctx.no_eager})"} if ctx.no_eager else {})},
        search=summary, trials=tuple(trial_rows(study)), front=tuple(front_numbers(done)),
        finalists=tuple(f.row | {"trial": f.trial} for f in chosen),
        pick=None if pick is None else pick.row | {"trial": pick.trial}, reached=pick is not None, reason=reason,
        verification=verification if pick else None, builds=dict(ctx.cache.builds), fingerprint=ctx.fingerprint,
        seconds=round(time.monotonic() - t0, 2), notes=(*ctx.notes, *notes))
    return _record(ctx, report, pick.row if pick else None)


def _rule(kind: str) -> str:
    if kind in ("latency", "speedup"):
        return "the smallest accuracy drop among the finalists that meet the goal, re-timed together here"
    return "the fastest finalist within the accuracy budget" + (" and the size" if kind == "size" else "") + \
        ", re-timed together here"


def _verify(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    """The pick's file checked against the model it was made from (dlopt verify): elementwise at the spec's
    tolerance for fp32 exports, the task's criterion (top-1 agreement, relative error) for int8 and half files."""
    path = ctx.target.run.path / row["artifact"]
    if path.suffix == ".json":
        return {"passed": True, "summary": "an eager checkpoint: the model itself, nothing exported to compare"}
    from dlopt.verify.core import VerifyConfig
    from dlopt.verify.criteria import task_criterion
    from dlopt.verify.stage import VerifyOptions, verify_path

    quantized = row["candidate"]["precision"] != "fp32"
    config = VerifyConfig(criterion=task_criterion(ctx.target.spec.task)) if quantized else VerifyConfig()
    ctx.events.step(f"verifying {row['label']}")
    out = verify_path(VerifyOptions(path=path, config=config, inputs=Path(ctx.cfg.inputs) if ctx.cfg.inputs
                                    else None))
    return verification(ctx, out.reports, out.passed, out.report_path, quantized)


def verification(ctx: Context, reports: dict[str, Any], passed: bool, written: Path, quantized: bool) -> dict[str, Any]:
    """The pick's verification record from dlopt verify's reports (format -> report) and the file it wrote."""
    worst = {fmt: r.worst() for fmt, r in reports.items()}
    said = [f"{fmt}: max abs error {w.get('max_abs') or 0:.3g}" + (f", top-1 agreement {w['top1']:.3f}"
            if w.get("top1") is not None else "") for fmt, w in worst.items() if isinstance(w, dict)]
    return {"passed": passed, "report": ctx.rel(written), "worst": worst,
            "criterion": "task (top-1 agreement / relative error)" if quantized else "elementwise (spec tolerance)",
            "summary": "; ".join(said) or "no figures"}


def _pictures(report: OptimizeReport, png: Path, md: Path) -> list[Path]:
    """The study's Pareto plot and a markdown summary beside the report (the run report reuses both renderers)."""
    from dlopt.core.fileio import atomic_path
    from dlopt.report.optimize import markdown_lines, pareto_plot

    data = report.to_json()
    drawn = pareto_plot(data, png)
    with atomic_path(md) as tmp:
        Path(tmp).write_text("\n".join([f"# dlopt optimize: {report.arch}", "", *markdown_lines(data, drawn)]),
                             encoding="utf-8")
    return [md, *([drawn] if drawn else [])]


def _record(ctx: Context, report: OptimizeReport, row: dict[str, Any] | None) -> OptimizeOutcome:
    """The stage `optimize`: the pick's files and the report, staged and moved into <run>/optimized/ whole."""
    import dataclasses

    from dlopt.core.results import write_result

    run = ctx.target.run
    with run.stage("optimize", {"optimize": ctx.cfg.to_json()}, inputs=[ctx.base.record], owns=(SHIPPED,)) as rec:
        shipped = []
        if row is not None:
            src = run.path / row["artifact"]
            for s in shipped_with(src):
                dest = rec.path(SHIPPED, f"model{s.suffix}")
                shutil.copyfile(s, dest)
                rec.outputs.append(dest)
                shipped.append(f"{SHIPPED}/model{s.suffix}")
        report = dataclasses.replace(report, shipped=tuple(shipped))
        rec.outputs.append(write_result(report, rec.path(SHIPPED, REPORT)))
        rec.outputs += _pictures(report, rec.path(SHIPPED, PLOT), rec.path(SHIPPED, SUMMARY))
        rec.metrics.update({"reached": report.reached, "trials": report.study.get("complete"),
                            **({"pick": row["label"], "p50_ms": row["p50_ms"], "drop": row["verdict"]["drop"],
                                "speedup_vs_eager": row["speedup_vs_eager"],
                                "speedup_vs_baseline": row.get("speedup_vs_baseline")} if row else {})})
    return OptimizeOutcome(run.path, report, run.path / SHIPPED / REPORT)
