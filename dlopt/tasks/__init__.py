"""Tasks: per kind of model, its metric, how a split is evaluated, its input conventions and its data's value range.

Verify, quantize, prune, evaluate and report use a task to score a model or to draw real inputs (calibration
batches, verification cases); training's families (dlopt.train.families) are a task plus a training loop. So no
stage imports the training package to measure a model. Tasks are registered by the name a spec's `trainer`
gives. This module imports no torch; `get_task` imports the task modules (and torch) when first called.

    task_cls = get_task(spec)              # e.g. ClassificationTask; .uses_data, .value_range, .mode
    task = task_cls(spec, model_cfg, data, Runtime.create(0.0, False), seed)
    task.evaluate(model, "test")           # {"loss": ..., "accuracy": ...}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dlopt.core.errors import UnsupportedError
from dlopt.tasks.inputs import as_inputs

__all__ = ["as_inputs", "get_task", "list_tasks"]

if TYPE_CHECKING:
    from dlopt.models.spec import ArchSpec
    from dlopt.tasks.base import Task


def _tasks() -> dict[str, type[Task]]:
    from dlopt.tasks import control, generative, seq2seq, supervised  # noqa: F401  (registration)
    from dlopt.tasks.base import _TASKS

    return _TASKS


def get_task(spec: ArchSpec) -> type[Task]:
    """The task of a spec (by its `trainer`); UnsupportedError when it has none dlopt knows."""
    tasks = _tasks()
    if not spec.trainer:
        raise UnsupportedError(f"{spec.name} has no task dlopt can evaluate: {spec.why_not('train')}")
    if spec.trainer not in tasks:
        raise UnsupportedError(f"{spec.name} names the unknown task {spec.trainer!r}; known tasks: "
                               f"{', '.join(sorted(tasks))}")
    return tasks[spec.trainer]


def list_tasks() -> list[str]:
    return sorted(_tasks())

