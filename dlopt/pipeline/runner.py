"""`run_pipeline`: train -> prune -> quantize -> export + verify -> evaluate -> bench -> report, in one run.

The steps come from the stage table (`dlopt.pipeline.stages`). Each is recorded in the manifest's ledger as it
finishes; `--resume RUN_DIR` skips every step whose config and input/output hashes are unchanged and none of whose
upstream steps (`Step.after`) reran since (`dlopt.pipeline.ledger`). A stage the architecture does not support
is recorded as such (with the spec's reason) and the others go on; so does a stage that fails, and
the pipeline then ends with a non-zero exit after writing the report.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlopt.core.errors import DloptError
from dlopt.core.runs import Run
from dlopt.models.spec import ArchSpec
from dlopt.pipeline import ledger, steps
from dlopt.pipeline.config import PipelineConfig
from dlopt.pipeline.stages import Step, plan

__all__ = ["PipelineOutcome", "Step", "StepOutcome", "plan", "run_pipeline"]


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
    from dlopt.models.registry import get_spec
    from dlopt.pipeline.config import stage_configs

    spec = get_spec(cfg.arch)
    configs = stage_configs(cfg)  # validation: each stage's own config, which its steps then run with
    run = open_run(cfg, spec, root, resume)
    ledger.store_config(run, cfg.to_json())
    ctx = steps.Context(run, cfg, spec, progress, show_bars, configs)
    done = [_do(step, ctx, resume is not None) for step in plan(cfg, spec)]
    if cfg.has("train") and not spec.supports("train"):
        done.insert(0, StepOutcome("train", "unsupported", 0.0, spec.why_not("train")))
    report = run.path / "report.html"
    return PipelineOutcome(str(run.path), done, str(report) if report.is_file() else None)
