"""The train stage on the stage contract (dlopt.contract.stage): `run_train` over `dlopt.train.api.train`.

No torch at import: the stage table reads this module's STAGE for names, sections and checks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.contract.stage import Outcome, Progress, Section, register_stage
from dlopt.core.errors import UnsupportedError
from dlopt.train.config import RESULT, TrainConfig


@dataclass(frozen=True)
class TrainOutcome(Outcome):
    result: Any  # the dlopt.core.results.TrainResult that train_result.json (report_path) holds


def run_train(target: Any, config: TrainConfig, progress: Progress | None = None) -> TrainOutcome:
    """Train `config.arch`: into a new run, or into the run `target` holds (a Run, or a Target's run: the
    pipeline's). The loop draws its own bars (`config.progress`); `progress` gets one line when it ends."""
    from dlopt.train.api import train

    run = getattr(target, "run", target)
    if run is not None:
        config = dataclasses.replace(config, run_dir=run.path)
    result = train(config)
    run_dir = Path(result.run_dir) if result.run_dir else None
    summary: dict[str, Any] = {}
    if run_dir is not None:
        from dlopt.core.runs import Run

        summary = dict(Run(run_dir).manifest().get("stages", {}).get("train", {}).get("metrics", {}))
    if progress is not None:
        progress(f"train: {result.epochs_run} epoch(s), best at {result.best_epoch}")
    return TrainOutcome(result, stage="train", run_dir=run_dir,
                        report_path=run_dir / RESULT if run_dir else None, summary=summary)


class TrainStage:
    name = "train"
    Config = TrainConfig
    # what the pipeline exposes of `dlopt train`; the architecture, seed and build options are pipeline-wide keys
    section = Section(keys=("epochs", "batch_size", "lr", "data", "data_path", "limit"),
                      comment="dlopt train options; 0 or \"\" = the architecture's / training family's default")

    def check(self, spec: Any, config: TrainConfig | None = None) -> None:
        if not spec.supports("train"):
            raise UnsupportedError(f"{spec.name} cannot be trained: {spec.why_not('train')}")

    def run(self, target: Any, config: TrainConfig, progress: Progress | None = None) -> TrainOutcome:
        return run_train(target, config, progress)


STAGE = register_stage(TrainStage())
