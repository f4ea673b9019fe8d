"""`optimize` on the stage contract (dlopt.contract.stage): an opt-in stage of `dlopt pipeline`, off unless `stages`
names it. It searches from the run's fp32 model beside prune and quantize; its pick (<run>/optimized/) is a variant
the bench step times with the others, so the ship pick compares them on one bench's numbers.

Its pipeline.toml section is flat (TOML has no nested goal):

    stages = ["train", "prune", "quantize", "optimize", "export", "verify", "bench"]
    [optimize]
    max_drop = 1.0
    target_speedup = 3.0          # or target_latency_ms / max_size_mb (at most one; 0 = not set)
    runtimes = ["onnxruntime", "openvino"]
    threads = [1]
    trials = 20
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.contract.stage import Outcome, Progress, Section, register_stage
from dlopt.optimize.config import DEFAULT_TRIALS, Goal, OptimizeConfig


@dataclass(frozen=True)
class OptimizeStageConfig:
    """The [optimize] section: the command's options, flat."""

    max_drop: float = 1.0
    target_latency_ms: float | None = None
    target_speedup: float | None = None
    max_size_mb: float | None = None
    batch_size: int = 1
    runtimes: tuple[str, ...] = ()  # () = every runtime that runs here
    threads: tuple[int, ...] = (1,)
    trials: int | None = DEFAULT_TRIALS
    time_budget_s: float | None = None
    finetune_epochs: int | None = None
    seed: int = 0
    inputs: str | None = None  # the pipeline's --inputs (not a pipeline.toml key): calibrate and judge on them

    def __post_init__(self) -> None:
        self.optimize_config()  # every option checked as `dlopt optimize` checks it

    def optimize_config(self) -> OptimizeConfig:
        goal = Goal(max_drop=self.max_drop, target_latency_ms=self.target_latency_ms,
                    target_speedup=self.target_speedup, max_size_mb=self.max_size_mb, batch_size=self.batch_size)
        return OptimizeConfig(goal=goal, runtimes=tuple(self.runtimes), threads=tuple(self.threads),
                              trials=self.trials, time_budget_s=self.time_budget_s,
                              finetune_epochs=self.finetune_epochs, seed=self.seed, inputs=self.inputs)


@dataclass(frozen=True, kw_only=True)
class OptimizeStageOutcome(Outcome):
    reached: bool
    shipped: tuple[str, ...]
    outputs: tuple[Path, ...]


class OptimizeStage:
    name = "optimize"
    Config = OptimizeStageConfig
    section = Section(keys=("max_drop", "target_latency_ms", "target_speedup", "max_size_mb", "batch_size",
                            "runtimes", "threads", "trials", "time_budget_s", "finetune_epochs"),
                      comment="dlopt optimize options: one search over prune ratio, blocks, precision, runtime, "
                              "threads (at most one of target_latency_ms, target_speedup, max_size_mb)")

    def check(self, spec: Any, config: OptimizeStageConfig | None = None) -> None:
        from dlopt.optimize.stage import optimize_check

        optimize_check((config or OptimizeStageConfig()).optimize_config())(spec)

    def run(self, target: Any, config: OptimizeStageConfig, progress: Progress | None = None) -> OptimizeStageOutcome:
        """The study on the run's model; a goal not reached is a failed step (nothing shipped), as in the CLI."""
        from dlopt.core.errors import CheckFailedError
        from dlopt.optimize.search import Events
        from dlopt.optimize.stage import run_optimize

        cfg = config.optimize_config()
        cfg = dataclasses.replace(cfg, study=study_name(target.checkpoint, cfg))
        out = run_optimize(target, cfg, Events(step=progress or (lambda _m: None)))
        if not out.reached:
            raise CheckFailedError(out.report.reason)
        files = tuple(out.run_dir / f for f in out.report.shipped) + (out.report_path,)
        return OptimizeStageOutcome(stage="optimize", run_dir=out.run_dir, report_path=out.report_path,
                                    summary={"pick": (out.report.pick or {}).get("label"), "reached": True},
                                    reached=True, shipped=out.report.shipped, outputs=files)


def study_name(checkpoint: Path, cfg: OptimizeConfig) -> str:
    """The pipeline's study for this model and search: a resumed step (killed mid-search, or given more trials)
    continues it; a retrained model or other search options (a new goal) get a new one, never the old trials."""
    import hashlib
    import json

    from dlopt.optimize.cache import Model
    from dlopt.optimize.study import SEARCH_KEYS

    data = cfg.to_json()
    key = json.dumps({"model": Model.of(checkpoint).sha, **{k: data[k] for k in SEARCH_KEYS}}, sort_keys=True,
                     default=str)
    return f"pipeline-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


STAGE = register_stage(OptimizeStage())  # opt-in: dlopt.contract.stage.OPT_IN
