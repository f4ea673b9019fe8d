"""`optimize` on the stage contract (dlopt.contract.stage), so `dlopt pipeline` can use it for its prune/quantize part.

Its pipeline.toml section is flat (TOML has no nested goal):

    stages = ["train", "optimize", "export", "verify", "bench"]
    [optimize]
    max_drop = 1.0
    target_speedup = 3.0          # or target_latency_ms / max_size_mb (at most one; 0 = not set)
    runtimes = ["onnxruntime", "openvino"]
    threads = [1]
    trials = 20

`register()` puts it in the stage table before export; the built-in table does not list it yet (adding
`"optimize": "dlopt.optimize.pipeline_stage"` to STAGE_MODULES, which also puts it in the default `stages`, is the
pipeline's call), so until then a caller registers it.
"""

from __future__ import annotations

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

    def __post_init__(self) -> None:
        self.optimize_config()  # every option checked as `dlopt optimize` checks it

    def optimize_config(self) -> OptimizeConfig:
        goal = Goal(max_drop=self.max_drop, target_latency_ms=self.target_latency_ms,
                    target_speedup=self.target_speedup, max_size_mb=self.max_size_mb, batch_size=self.batch_size)
        return OptimizeConfig(goal=goal, runtimes=tuple(self.runtimes), threads=tuple(self.threads),
                              trials=self.trials, time_budget_s=self.time_budget_s,
                              finetune_epochs=self.finetune_epochs, seed=self.seed)


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
                      comment="dlopt optimize options: one search over prune ratio, precision, runtime and threads "
                              "(at most one of target_latency_ms, target_speedup, max_size_mb)")

    def check(self, spec: Any, config: OptimizeStageConfig | None = None) -> None:
        from dlopt.optimize.stage import optimize_check

        optimize_check((config or OptimizeStageConfig()).optimize_config())(spec)

    def run(self, target: Any, config: OptimizeStageConfig, progress: Progress | None = None) -> OptimizeStageOutcome:
        """The study on the run's model; a goal not reached is a failed step (nothing shipped), as in the CLI."""
        from dlopt.core.errors import CheckFailedError
        from dlopt.optimize.search import Events
        from dlopt.optimize.stage import run_optimize

        out = run_optimize(target, config.optimize_config(), Events(step=progress or (lambda _m: None)))
        if not out.reached:
            raise CheckFailedError(out.report.reason)
        files = tuple(out.run_dir / f for f in out.report.shipped) + (out.report_path,)
        return OptimizeStageOutcome(stage="optimize", run_dir=out.run_dir, report_path=out.report_path,
                                    summary={"pick": (out.report.pick or {}).get("label"), "reached": True},
                                    reached=True, shipped=out.report.shipped, outputs=files)


def register() -> Any:
    """Make `optimize` a stage of the table (and so of `dlopt pipeline`), placed before export."""
    return register_stage(OptimizeStage(), before="export")
