"""`run_pipeline`: train -> prune -> quantize -> export + verify -> evaluate -> bench -> report, in one run.

Each step is recorded in the manifest's ledger as it finishes; `--resume RUN_DIR` skips every step whose
config and input/output hashes are unchanged and none of whose upstream steps (`Step.after`) reran since
(`dlopt.pipeline.ledger`). A stage the architecture does not
support is recorded as such (with the spec's reason) and the others go on; so does a stage that fails, and
the pipeline then ends with a non-zero exit after writing the report.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlopt.errors import DloptError
from dlopt.pipeline import ledger, steps
from dlopt.pipeline.config import PipelineConfig
from dlopt.runs import Run
from dlopt.spec import ArchSpec


@dataclass(frozen=True)
class StepOutcome:
    name: str
    status: str  # ran | skipped (unchanged on resume) | unsupported | failed
    seconds: float = 0.0
    reason: str | None = None


@dataclass(frozen=True)
class PipelineOutcome:
    run_dir: str
    steps: list[StepOutcome] = field(default_factory=list)
    report: str | None = None

    @property
    def failed(self) -> list[StepOutcome]:
        return [s for s in self.steps if s.status == "failed"]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[steps.Context], list[Path]]
    config: Callable[[steps.Context], Any]
    inputs: Callable[[steps.Context], list[Path]]
    unsupported: Callable[[steps.Context], str | None] = lambda _ctx: None
    after: tuple[str, ...] = ()  # steps whose outputs this one uses: when one of them reruns, so does this one
    always: bool = False  # cheap enough to redo on every resume


FIRST = ("train", "build")  # whichever of the two made the fp32 model
MODELS = (*FIRST, "prune", "quantize", "quantize-pruned", "export", "export-pruned")  # every variant's maker


def _weights(ctx: steps.Context, *folders: str) -> list[Path]:
    return [ctx.path(f, "model.safetensors") if f else ctx.path("model.safetensors") for f in folders]


def _everything(ctx: steps.Context) -> list[Path]:
    from dlopt.pipeline.evaluate import artifacts, checkpoint_records

    records = checkpoint_records(ctx.run)
    return [*records, *(r.with_suffix(".safetensors") for r in records), *artifacts(ctx.run)]


def _method_limit(ctx: steps.Context, stage: str, method: str | None) -> str | None:
    key = f"{stage}:{method}" if method and method != "auto" else stage
    return None if ctx.spec.supports(stage) and ctx.spec.supports(key) else ctx.spec.why_not(key)


def _pruned(ctx: steps.Context) -> bool:
    return ctx.path(steps.PRUNED, steps.MODEL).is_file()


def plan(cfg: PipelineConfig, spec: ArchSpec) -> list[Step]:
    train = Step("train", steps.train, lambda c: {"train": dataclasses.asdict(c.cfg.train), "sets": c.cfg.sets,
                                                   "tiny": c.cfg.tiny, "seed": c.cfg.seed, "input_size": c.cfg.input_size},
                 lambda c: [])  # first step: depends on nothing
    build = Step("build", steps.build, lambda c: {"sets": c.cfg.sets, "tiny": c.cfg.tiny, "seed": c.cfg.seed,
                                                  "input_size": c.cfg.input_size}, lambda c: [])
    # A model the spec cannot train (a user's file) is built as given; the steps table says why.
    out = [train if cfg.has("train") and spec.supports("train") else build]
    if cfg.has("prune"):
        out.append(Step("prune", steps.prune, lambda c: c.cfg.prune, lambda c: _weights(c, ""),
                        lambda c: _method_limit(c, "prune", c.cfg.prune.get("method", "structured")), after=FIRST))
    if cfg.has("quantize"):
        limit = lambda c: _method_limit(c, "quantize", c.cfg.quantize.get("method", "auto"))  # noqa: E731
        out.append(Step("quantize", lambda c: steps.quantize(c, "int8", None), lambda c: c.cfg.quantize,
                        lambda c: _weights(c, ""), limit, after=FIRST))
        if cfg.has("prune"):
            out.append(Step("quantize-pruned", lambda c: steps.quantize(c, "pruned-int8", "pruned/model.json"),
                            lambda c: c.cfg.quantize, lambda c: _weights(c, steps.PRUNED),
                            lambda c: limit(c) or (None if _pruned(c) else "no pruned model in this run"),
                            after=("prune",)))
    if cfg.has("export"):
        conf = lambda c: {**dataclasses.asdict(c.cfg.export), "verify": c.cfg.has("verify")}  # noqa: E731
        out.append(Step("export", lambda c: steps.export(c, "", "export"), conf, lambda c: _weights(c, ""),
                        after=FIRST))
        if cfg.has("prune"):
            out.append(Step("export-pruned", lambda c: steps.export(c, steps.PRUNED, "export-pruned"), conf,
                            lambda c: _weights(c, steps.PRUNED),
                            lambda c: None if _pruned(c) else "no pruned model in this run", after=("prune",)))
    out.append(Step("evaluate", steps.evaluate, lambda c: {}, _everything, after=MODELS))
    if cfg.has("bench"):
        out.append(Step("bench", steps.bench, lambda c: dataclasses.asdict(c.cfg.bench), _everything, after=MODELS))
    everything = tuple(s.name for s in out)
    out.append(Step("report", steps.report, lambda c: {}, lambda c: [], after=everything, always=True))
    return out


def _do(step: Step, ctx: steps.Context, resume: bool) -> StepOutcome:
    config, t0 = step.config(ctx), time.perf_counter()
    reason = step.unsupported(ctx)
    if reason:
        ctx.progress(f"{step.name}: not for {ctx.spec.name}: {reason}")
        ledger.record(ctx.run, step.name, config, [], [], 0.0, status="unsupported", note=reason)
        return StepOutcome(step.name, "unsupported", 0.0, reason)
    inputs = step.inputs(ctx)
    why = ledger.why_rerun(ctx.run, step.name, config, inputs, step.after) if resume else "new run"
    why = why or ("rewritten on every run" if step.always else None)
    if why is None:
        ctx.progress(f"{step.name}: unchanged, skipped")
        return StepOutcome(step.name, "skipped", 0.0, "inputs and outputs unchanged")
    ctx.progress(f"{step.name}: running ({why})" if resume else f"{step.name}: running")
    try:
        outputs = step.run(ctx)
    except DloptError as exc:
        seconds = time.perf_counter() - t0
        ledger.record(ctx.run, step.name, config, inputs, [], seconds, status="failed", note=str(exc))
        ctx.progress(f"{step.name}: failed: {exc}")
        return StepOutcome(step.name, "failed", round(seconds, 2), str(exc))
    seconds = time.perf_counter() - t0
    ledger.record(ctx.run, step.name, config, inputs, outputs, seconds)
    return StepOutcome(step.name, "ran", round(seconds, 2), why if resume else None)


def open_run(cfg: PipelineConfig, spec: ArchSpec, root: Path, resume: Path | None) -> Run:
    if resume is not None:
        return Run.open(resume)
    return Run.create(root, spec.name, {"arch": spec.name, "checkpoint": steps.MODEL, "source": "dlopt pipeline"})


def run_pipeline(cfg: PipelineConfig, root: Path, resume: Path | None = None,
                 progress: Callable[[str], None] = lambda _m: None, show_bars: bool = True) -> PipelineOutcome:
    """Run (or resume) the pipeline for `cfg.arch`; returns what each step did and where the report is."""
    from dlopt.pipeline.config import validate
    from dlopt.registry import get_spec

    spec = get_spec(cfg.arch)
    validate(cfg)
    run = open_run(cfg, spec, root, resume)
    ledger.store_config(run, cfg.to_json())
    ctx = steps.Context(run, cfg, spec, progress, show_bars)
    done = [_do(step, ctx, resume is not None) for step in plan(cfg, spec)]
    if cfg.has("train") and not spec.supports("train"):
        done.insert(0, StepOutcome("train", "unsupported", 0.0, spec.why_not("train")))
    report = run.path / "report.html"
    return PipelineOutcome(str(run.path), done, str(report) if report.is_file() else None)
