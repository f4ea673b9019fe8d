"""The spec's metric for any model, on the data a run was trained on: a task bound to that data.

Pruning, quantization, verification and the pipeline all need "what is the test accuracy now?" for a modified
model or an exported file. The answer must use the same data split and the same metric code as training, so an
Evaluator binds the spec's task (dlopt.tasks) to the run's data. No torch import at module level.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.core.runs import Run
from dlopt.models.spec import ArchSpec


@dataclass
class Evaluator:
    """A task bound to a dataset: `evaluate(model, split)` gives the spec's metrics."""

    task: Any  # dlopt.tasks.base.Task
    spec: ArchSpec
    data_options: dict[str, Any]  # how the data was loaded (name, path, seed), for reports

    @property
    def metric(self) -> str:
        return self.spec.metric

    @property
    def higher_is_better(self) -> bool:
        return self.task.mode != "min"

    @property
    def data(self) -> Any:
        return self.task.data

    def evaluate(self, model: Any, split: str = "test") -> dict[str, float]:
        """All of the task's metrics for `model` (a module, or a RunnerModule) on `split`."""
        return self.task.evaluate(model, split)

    def score(self, model: Any, split: str = "test") -> float:
        return float(self.evaluate(model, split)[self.metric])


def train_options(run: Run | None) -> dict[str, Any] | None:
    """The data options of the run's finished train stage (data, data_path, seed, limit), or None."""
    if run is None:
        return None
    train = run.manifest().get("stages", {}).get("train", {})
    if train.get("status") != "done":
        return None
    return dict(train.get("config", {}).get("train", {}))


def evaluator_for(run: Run | None, spec: ArchSpec, cfg: Any, *, default_data: bool = True,
                  limit: int | None = None) -> Evaluator | None:
    """An evaluator on the run's training data; with no finished train stage, the spec's own dataset when
    `default_data` (else None). None too when the task has no dataset (DQN) or the spec has no task."""
    from dlopt.tasks import get_task
    from dlopt.tasks.runtime import Runtime

    if not spec.trainer:
        return None
    task_cls = get_task(spec)
    if not task_cls.uses_data:
        return None
    options = train_options(run)
    if options is None and not default_data:
        return None
    options = options or {}
    from dlopt.data import load_data

    data = load_data(spec, cfg, options.get("data"), path=options.get("data_path"), seed=options.get("seed", 0),
                     limit=limit if limit is not None else options.get("limit"), value_range=task_cls.value_range)
    task = task_cls(spec, cfg, data, Runtime.create(0.0, False), int(options.get("seed", 0)))  # no step: no clipping
    used = {k: options.get(k) for k in ("data", "data_path", "seed") if options.get(k) is not None}
    return Evaluator(task, spec, {**used, "source": "run" if options else "spec default"})

def runner_module(runner: Any) -> Any:
    """Wrap a callable(*tensors) -> tuple (e.g. `dlopt.export.load_artifact`) as an nn.Module returning
    a tensor when there is one output, as the eager model does."""
    import torch

    class RunnerModule(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.runner = runner

        def forward(self, *inputs: Any) -> Any:
            out = self.runner(*inputs)
            return out[0] if len(out) == 1 else out

    return RunnerModule()


def evaluate_artifact(path: Path, evaluator: Evaluator, split: str = "test", threads: int | None = None) -> dict[str, float]:
    """The metrics of an exported file (ONNX, TorchScript, .pt2) through the same loop as the eager model."""
    from dlopt.runtime.loader import load_artifact

    return evaluator.evaluate(runner_module(load_artifact(Path(path), threads=threads)), split)
