"""`dlopt optimize`: reach a goal (accuracy drop, latency, speed-up or size) with one measured search over prune
ratio, precision, runtime and threads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dlopt.cli.common import JsonOpt, NameArg, TargetArgs, console, err_console, note, print_json, verbosity
from dlopt.cli.groups import ADVANCED, grouped, stage_panel
from dlopt.core.errors import CheckFailedError, UsageError

GOAL, SEARCH = "Goal", stage_panel("search")


def _threads(value: str) -> int:
    """--threads N or auto (0: every count from 1 to the cores)."""
    if value == "auto":
        return 0
    try:
        n = int(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r}: give a number of threads or auto") from None
    if n < 1:
        raise typer.BadParameter(f"{value!r}: give at least 1 thread, or auto")
    return n


@dataclass(frozen=True)
class OptimizeArgs:
    """`dlopt optimize`'s own options. None means "not given": --resume takes the study's own options then."""

    max_drop: Annotated[float | None, typer.Option(
        "--max-drop", rich_help_panel=GOAL, show_default=False,
        help="Accuracy budget in points of the task metric (percent for lower-is-better metrics; disagreement with "
             "fp32 where there is no metric). Default 1.")] = None
    target_latency: Annotated[float | None, typer.Option(
        "--target-latency", metavar="MS", rich_help_panel=GOAL, show_default=False,
        help="Latency goal in ms at --batch-size on this machine: the most accurate candidate that meets it.")] = None
    target_speedup: Annotated[float | None, typer.Option(
        "--target-speedup", metavar="X", rich_help_panel=GOAL, show_default=False,
        help="Speed-up goal against fp32 eager (same batch and threads; for an ONNX file, against the file itself "
             "on ONNX Runtime): the most accurate candidate that meets it.")] = None
    max_size: Annotated[float | None, typer.Option(
        "--max-size", metavar="MB", rich_help_panel=GOAL, show_default=False,
        help="Size goal: the fastest candidate whose file is at most this many MB. With none of the three goals: "
             "the fastest within --max-drop.")] = None
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, rich_help_panel=GOAL, show_default=False,
                                                   help="Batch size the latency is measured at. Default 1.")] = None
    runtimes: Annotated[str | None, typer.Option(
        "--runtimes", metavar="onnxruntime,openvino,eager,torchscript", rich_help_panel=SEARCH, show_default=False,
        help="Runtimes searched (comma-separated). Default: every one that runs here.")] = None
    threads: Annotated[int | None, typer.Option(
        "--threads", metavar="N|auto", parser=_threads, rich_help_panel=SEARCH, show_default=False,
        help="Threads per candidate; auto (default) searches 1 to the number of cores.")] = None
    trials: Annotated[int | None, typer.Option(
        "--trials", min=1, rich_help_panel=SEARCH, show_default=False,
        help="Stop when the study holds this many finished trials (all workers together). Default 20 unless "
             "--time-budget is given.")] = None
    time_budget: Annotated[str | None, typer.Option(
        "--time-budget", metavar="DURATION", rich_help_panel=SEARCH, show_default=False,
        help="Stop starting trials after this long, e.g. 20m, 1h30m, 600 (seconds).")] = None
    resume: Annotated[Path | None, typer.Option(
        "--resume", rich_help_panel=SEARCH, show_default=False,
        help="Continue the study of this run with the options it started with (--trials / --time-budget may "
             "extend it); finished trials are kept, killed ones marked failed.")] = None
    storage: Annotated[str | None, typer.Option(
        "--storage", metavar="URL", rich_help_panel=SEARCH, show_default=False,
        help="Optuna RDB storage shared by several workers (sqlite:///f.db, postgresql://...). Default: SQLite "
             "inside the run (optimize/study.db).")] = None
    study: Annotated[str | None, typer.Option("--study", metavar="NAME", rich_help_panel=SEARCH, show_default=False,
                                              help="Study name in --storage (needed with it).")] = None
    inputs: Annotated[Path | None, typer.Option(
        "--inputs", metavar="FILE.npz", rich_help_panel=SEARCH, show_default=False,
        help="Your inputs: int8 calibrates on them; without a task metric, candidates are judged on their held-out "
             "rows.")] = None
    finetune_epochs: Annotated[int | None, typer.Option(
        "--finetune-epochs", rich_help_panel=ADVANCED, show_default=False,
        help="Fine-tuning epochs after each prune (default: dlopt prune's, 3 where the run has data, up to 6 "
             "more for the residual blocks a candidate removes).")] = None
    limit: Annotated[int | None, typer.Option("--limit", rich_help_panel=ADVANCED, show_default=False,
                                              help="Cap on samples per split (quick runs).")] = None
    seed: Annotated[int | None, typer.Option("--seed", rich_help_panel=ADVANCED, show_default=False,
                                             help="Sampler and fine-tuning seed. Default 0.")] = None

    def search_given(self) -> dict[str, Any]:
        """Options given that change what the study searches -> their value in the config they make."""
        return {k: v for k, v in _searched(self.config()).items() if getattr(self, k) is not None}

    def config(self) -> Any:
        from dlopt.optimize.config import (
            DEFAULT_STUDY,
            Goal,
            OptimizeConfig,
            parse_duration,
            parse_runtimes,
            parse_threads,
        )

        if self.storage is not None and self.study is None:
            raise UsageError("--storage is shared by name: give --study NAME too (every worker the same)")
        goal = Goal(max_drop=1.0 if self.max_drop is None else self.max_drop, target_latency_ms=self.target_latency,
                    target_speedup=self.target_speedup, max_size_mb=self.max_size, batch_size=self.batch_size or 1)
        return OptimizeConfig(
            goal=goal, runtimes=parse_runtimes(self.runtimes),
            threads=parse_threads(None if not self.threads else str(self.threads)), trials=self.trials,
            time_budget_s=parse_duration(self.time_budget), storage=self.storage, study=self.study or DEFAULT_STUDY,
            inputs=str(Path(self.inputs).resolve()) if self.inputs else None, seed=self.seed or 0,
            finetune_epochs=self.finetune_epochs, data_limit=self.limit)

    def resumed(self) -> tuple[Any, Path]:
        """The stored config of the --resume run, with --trials / --time-budget applied."""
        import dataclasses
        import json

        from dlopt.optimize.cache import FOLDER
        from dlopt.optimize.config import OptimizeConfig, parse_duration
        from dlopt.optimize.stage import CONFIG

        stored = Path(self.resume) / FOLDER / CONFIG
        if not stored.is_file():
            raise UsageError(f"{self.resume} has no optimize study to resume (no {FOLDER}/{CONFIG}); start one with "
                             "dlopt optimize TARGET")
        cfg = OptimizeConfig.from_json(json.loads(stored.read_text()))
        was = _searched(cfg)
        for key, value in self.search_given().items():  # the same as the study's: the printed resume line works
            if value != was[key]:
                raise UsageError(f"--resume continues the study with the options it started with: drop "
                                 f"--{key.replace('_', '-')} (the study has {was[key]!r})")
        extend = {k: v for k, v in (("trials", self.trials), ("time_budget_s", parse_duration(self.time_budget)))
                  if v is not None}
        return dataclasses.replace(cfg, **extend), Path(self.resume)


def _searched(cfg: Any) -> dict[str, Any]:
    """What each search option set in an OptimizeConfig, by the option's name."""
    return {"max_drop": cfg.goal.max_drop, "target_latency": cfg.goal.target_latency_ms,
            "target_speedup": cfg.goal.target_speedup, "max_size": cfg.goal.max_size_mb,
            "batch_size": cfg.goal.batch_size, "runtimes": cfg.runtimes, "threads": cfg.threads,
            "storage": cfg.storage, "study": cfg.study, "inputs": cfg.inputs, "seed": cfg.seed,
            "finetune_epochs": cfg.finetune_epochs, "limit": cfg.data_limit}


def _precheck(cfg: Any) -> None:
    """Everything that can be refused before a run directory exists."""
    from dlopt.data.inputs_file import precheck
    from dlopt.optimize.space import check_runtimes

    check_runtimes(cfg)
    precheck(Path(cfg.inputs) if cfg.inputs else None)
    if cfg.storage is not None:
        from dlopt.optimize.study import open_storage

        open_storage(cfg.storage).engine.dispose()  # a server that refuses fails here, not after a run is made


@grouped
def optimize_cmd(name: NameArg = None, *, args: OptimizeArgs, model: TargetArgs, as_json: JsonOpt = False) -> None:
    """Search prune ratio x residual blocks x precision x runtime x threads for the fastest model within --max-drop
    (or one that meets --target-latency / --target-speedup / --max-size), pick it by re-timing here, verify it, ship
    it. An ONNX file made elsewhere (model.onnx): runtime x precision x threads, judged and timed against the file
    itself."""
    from dlopt.cli.resume import offer_resume
    from dlopt.contract.target import resolve_target
    from dlopt.optimize.stage import optimize_check, run_optimize

    cfg, run_dir = args.resumed() if args.resume is not None else (args.config(), None)
    opts = model.options(str(run_dir) if run_dir is not None else name, seed=cfg.seed)
    source = _onnx_source(opts, run_dir)
    _precheck(cfg)
    offer_resume("optimize", args.resume, model.out)  # Ctrl-C prints `dlopt optimize --resume RUN ...`
    if source is not None:  # an ONNX file made elsewhere
        from dlopt.optimize.onnx_source import optimize_onnx_file, prepare

        prep = prepare(source, cfg)  # the hostile-file checks and the inputs: nothing is made before they pass
        outcome = _run(lambda ev: optimize_onnx_file(prep, model.out, ev, run_dir), cfg, quiet=as_json)
    else:
        target = resolve_target(opts, optimize_check(cfg))  # a spec with nothing to search: no run is made
        offer_resume("optimize", target.run.path, model.out)
        outcome = _run(lambda ev: run_optimize(target, cfg, ev), cfg, quiet=as_json)
    if as_json:
        print_json(outcome.to_json())
    else:
        _render(outcome)
    if not outcome.reached:
        raise CheckFailedError(outcome.report.reason)


def _onnx_source(opts: Any, run_dir: Path | None) -> Path | None:
    """The ONNX file the command optimizes (named, or studied by the --resume run), else None."""
    if run_dir is not None:
        from dlopt.optimize.onnx_source import resumed_source

        return resumed_source(run_dir)
    from dlopt.quantize.onnx_file import onnx_target

    return onnx_target(opts)


def _run(optimize: Any, cfg: Any, quiet: bool) -> Any:
    """The search under a Rich progress bar on stderr: trial n/N, elapsed, best so far."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from dlopt.cli.common import QUIET
    from dlopt.optimize.search import Events

    total = cfg.stop[0]
    with Progress(SpinnerColumn(), TextColumn("trial"), MofNCompleteColumn(), BarColumn(bar_width=24),
                  TimeElapsedColumn(), TextColumn("{task.fields[best]}"), TextColumn("[dim]{task.description}"),
                  console=err_console, disable=quiet or verbosity() == QUIET) as bar:
        task = bar.add_task("starting", total=total, best="")
        events = Events(step=lambda msg: bar.update(task, description=msg[:70]),
                        trial=lambda i: bar.update(task, completed=i["done"],
                                                   best=f"best: {i['best']}" if i["best"] else "no feasible yet"))
        return optimize(events)


def _fmt(x: Any, spec: str = ".3g", suffix: str = "") -> str:
    return "-" if x is None else f"{x:{spec}}{suffix}"


def _render(outcome: Any) -> None:
    from dlopt.report.optimize import vs_eager

    r = outcome.report
    s = r.study
    note(f"[dim]{r.arch}: {s['complete']} finished trial(s) of {s['trials']} ({s['fail']} failed) in study "
         f"{s['name']} ({s['storage']}); accuracy: {r.basis}[/dim]", highlight=False)
    against = r.baseline.get("speed_reference", "fp32 eager")
    table = Table(title=f"Pareto finalists, re-timed together here (goal: {_goal(r.goal, against)})",
                  title_justify="left")
    for col in ("trial", "candidate", "ms", "vs fp32 eager", "vs fp32 same runtime", "drop (pts)", "MB", ""):
        table.add_column(col)
    picked = (r.pick or {}).get("trial")
    for f in r.finalists:
        ref = (f.get("runtime_reference") or "").removeprefix("fp32 ")
        table.add_row(str(f["trial"]), f["label"], _fmt(f["p50_ms"]), vs_eager(r.baseline, f, short=True, missing="-"),
                      _fmt(f["speedup_vs_runtime_fp32"], ".2f", f"x ({ref})" if ref else "x"),
                      _fmt(f["verdict"]["drop"], ".2f"), _fmt(f["size_bytes"] / 1e6), "★ pick" if f["trial"] == picked
                      else "")
    console.print(table)
    for line in r.notes:
        note(f"[yellow]note:[/yellow] {line}")
    if r.pick:
        p = r.pick
        console.print(f"[bold green]pick:[/bold green] {p['label']}: {p['p50_ms']:.3g} ms at batch "
                      f"{r.goal['batch_size']}, {_speed(r.baseline, p)}, drop {p['verdict']['drop']:.2f} points "
                      f"({r.reason})", highlight=False)
        note(f"[dim]shipped {', '.join(r.shipped)} in {outcome.run_dir}; verified: "
             f"{(r.verification or {}).get('summary')}; report {outcome.report_path}[/dim]", highlight=False)


def _speed(baseline: dict[str, Any], p: dict[str, Any]) -> str:
    """vs fp32 eager (or why there is none), and vs the baseline where that is not eager."""
    from dlopt.report.optimize import vs_eager

    eager = f"{vs_eager(baseline, p)} vs fp32 eager" if p.get("speedup_vs_eager") is not None else \
        f"vs fp32 eager: {vs_eager(baseline, p)}"
    ref = p.get("baseline_reference")
    return eager if ref in (None, "fp32 eager") else f"{_fmt(p['speedup_vs_baseline'], '.2f', 'x')} vs {ref}, {eager}"


def _goal(goal: dict[str, Any], against: str) -> str:
    from dlopt.optimize.config import Goal

    return Goal(**goal).describe(against)


def register(app: typer.Typer) -> None:
    app.command("optimize")(optimize_cmd)
