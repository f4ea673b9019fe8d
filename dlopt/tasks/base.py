"""A task: how a model of one kind is evaluated on a split of its data, and the input conventions it assumes.

A task says which metrics a split gives (the spec's metric among them), which direction is better (`mode`),
whether it needs a dataset (`uses_data`) and in what value range (`value_range`, asked of the data layer), and
how a batch reaches the model (`collate`, `as_inputs`). Stages (verify, quantize, prune, evaluate, report) use
tasks; each training family (dlopt.train.families) is its task plus a training loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import torch

from dlopt.models.spec import ArchSpec
from dlopt.tasks.runtime import Runtime, eval_mode

EVAL_BATCH = 256
_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Make a task known by its name (the name a spec's `trainer` gives)."""
    _TASKS[cls.name] = cls
    return cls


class Task:
    name: ClassVar[str] = ""
    mode: ClassVar[str] = "max"  # "max" / "min": better validation metric; "last": keep the last epoch
    uses_data: ClassVar[bool] = True
    value_range: ClassVar[tuple[float, float] | None] = None  # asked of the data layer (Tanh / Sigmoid outputs)

    def __init__(self, spec: ArchSpec, model_cfg: Any, data: Any, rt: Runtime, seed: int) -> None:
        self.spec, self.model_cfg, self.data, self.rt, self.seed = spec, model_cfg, data, rt, seed
        self.info: dict[str, Any] = dict(getattr(data, "info", {}) or {})

    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, float]:
        """Every metric of `model` on `split` ("train", "val", "test"), the spec's metric among them."""
        raise NotImplementedError

    def collate(self, dataset: Any, indices: Any) -> Any:
        """The samples at `indices` as one batch on the runtime's device."""
        from torch.utils.data import default_collate

        rows = [int(i) for i in indices]
        fetch = getattr(dataset, "__getitems__", None)  # a whole batch at once (ImageSet: one resize per batch)
        return self.rt.to_device(default_collate(fetch(rows) if fetch else [dataset[i] for i in rows]))

    def eval_batches(self, split: str) -> Iterator[Any]:
        from dlopt.data.common import bounded_batch

        dataset = getattr(self.data, split)
        step = bounded_batch(dataset, EVAL_BATCH)  # fewer when inputs are large (224 x 224): bounded memory
        for start in range(0, len(dataset), step):
            yield self.collate(dataset, range(start, min(len(dataset), start + step)))

    def mean_over(self, model: torch.nn.Module, split: str, fn: Any) -> dict[str, float]:
        """Sample-weighted means of fn(model, x, y) -> {name: (sum, count)} over a split, in eval mode."""
        sums: dict[str, list[float]] = {}
        with eval_mode(model), self.rt.autocast():
            for x, y in self.eval_batches(split):
                for key, (total, count) in fn(model, x, y).items():
                    acc = sums.setdefault(key, [0.0, 0.0])
                    acc[0] += float(total)
                    acc[1] += float(count)
        return {k: s / max(c, 1.0) for k, (s, c) in sums.items()}
