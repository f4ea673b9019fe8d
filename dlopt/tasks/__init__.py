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

__all__ = ["as_inputs", "by_trainer", "get_task", "list_tasks"]

if TYPE_CHECKING:
    from dlopt.models.spec import ArchSpec
    from dlopt.tasks.base import Task


def _tasks() -> dict[str, type[Task]]:
    from dlopt.tasks import control, generative, seq2seq, supervised  # noqa: F401  (registration)
    from dlopt.tasks.base import _TASKS

    return _TASKS


def by_trainer(spec: ArchSpec, table: dict[str, type], none: str, noun: str) -> type:
    """The entry of `table` a spec's `trainer` names (tasks here, training loops in dlopt.train.families), or one line
    saying why there is none: `none` when the spec names no trainer, else the known `noun`s."""
    if not spec.trainer:
        raise UnsupportedError(f"{spec.name} {none}: {spec.why_not('train')}")
    if spec.trainer not in table:
        raise UnsupportedError(f"{spec.name} names the unknown {noun} {spec.trainer!r}; known {noun}s: "
                               f"{', '.join(sorted(table))}")
    return table[spec.trainer]


def get_task(spec: ArchSpec) -> type[Task]:
    """The task of a spec (by its `trainer`); UnsupportedError when it has none dlopt knows."""
    return by_trainer(spec, _tasks(), "has no task dlopt can evaluate", "task")


def list_tasks() -> list[str]:
    return sorted(_tasks())

