"""Training families: a task (dlopt.tasks: metric, evaluation of a split, inputs) plus its training loop.

A family adds to its task how to compute a step's loss, its optimizers, augmentation and the artifacts it leaves
(sample grids); it is registered by name and chosen by `spec.trainer` (dlopt.train.families.get_family). The
engine (`dlopt.train.engine`) owns everything else: epochs, schedule, early stopping, checkpoints, resume.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch

from dlopt.models.spec import ArchSpec
from dlopt.tasks.base import Task
from dlopt.tasks.runtime import Runtime, shard
from dlopt.train.config import HParams, OptimizerName

_FAMILIES: dict[str, type[Family]] = {}


class NonFiniteLoss(Exception):
    """A step's loss was NaN or infinite: the engine stops and keeps the last good checkpoint."""

    def __init__(self, epoch: int, step: int, stats: dict[str, float]) -> None:
        super().__init__(f"loss became {stats} at epoch {epoch + 1}, step {step + 1}")
        self.epoch, self.step, self.stats = epoch, step, stats


def register_family(cls: type[Family]) -> type[Family]:
    _FAMILIES[cls.name] = cls
    return cls


def make_optimizer(params: Any, hp: HParams, **overrides: Any) -> torch.optim.Optimizer:
    if hp.optimizer == OptimizerName.SGD:
        return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, nesterov=hp.momentum > 0,
                               weight_decay=hp.weight_decay)
    return torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay, **overrides)


def warmup_cosine(optimizer: torch.optim.Optimizer, hp: HParams, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up over hp.warmup of the steps, then cosine down to hp.min_lr_ratio * lr."""
    warm = max(1, int(hp.warmup * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return hp.min_lr_ratio + (1 - hp.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Family(Task):
    """A subclass lists its task first: `class Classification(ClassificationTask, Family)`."""

    distributed: ClassVar[bool] = True
    defaults: ClassVar[HParams] = HParams()

    def __init__(self, spec: ArchSpec, model_cfg: Any, data: Any, hp: HParams, rt: Runtime, seed: int) -> None:
        self.hp = hp
        super().__init__(spec, model_cfg, data, rt, seed)

    # --- what a family may override -------------------------------------------------------------
    def optimizers(self, model: torch.nn.Module) -> dict[str, torch.optim.Optimizer]:
        return {"model": make_optimizer(model.parameters(), self.hp)}

    def loss(self, model: torch.nn.Module, x: Any, y: Any) -> torch.Tensor:
        raise NotImplementedError

    def train_step(self, model: torch.nn.Module, batch: Any, opts: dict, weight: float) -> dict[str, float]:
        x, y = batch
        with self.rt.autocast():
            loss = self.loss(model, x, y)
        self.rt.step(loss, model.parameters(), opts["model"], weight)
        return {"loss": float(loss.detach())}

    def run_epoch(self, model: torch.nn.Module, opts: dict, scheds: list, epoch: int, on_step: Any) -> dict[str, float]:
        """One epoch of training; returns the mean of each logged training loss."""
        sums: dict[str, float] = {}
        steps = 0
        model.train()
        for step, (batch, weight) in enumerate(self.epoch_batches(epoch)):
            stats = self.train_step(model, batch, opts, weight)
            if not self.rt.all_true(all(math.isfinite(v) for v in stats.values())):
                raise NonFiniteLoss(epoch, step, stats)
            for sched in scheds:
                sched.step()
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value
            steps += 1
            on_step(stats)
        return {k: v / max(1, steps) for k, v in sums.items()}

    def steps_per_epoch(self) -> int:
        n, bs = len(self.data.train), self.hp.batch_size
        return max(1, n // bs if n % bs < self._min_last() else -(-n // bs))

    def epoch_batches(self, epoch: int) -> Iterator[tuple[Any, float]]:
        """(batch on device, this worker's share of the global batch), shuffled by (seed, epoch)."""
        n, bs = len(self.data.train), self.hp.batch_size
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=gen)
        for step, start in enumerate(range(0, n, bs)):
            idx = order[start:start + bs]
            if len(idx) < self._min_last() and start > 0:
                break  # a tiny last batch: BatchNorm cannot train on one sample, workers need one each
            rows = shard(torch.arange(len(idx)), self.rt.rank, self.rt.world_size)
            batch = self.collate(self.data.train, idx[rows])
            aug = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 100_003 + step)
            yield self.augment(batch, aug, rows, len(idx)), len(rows) / len(idx)

    def augment(self, batch: Any, gen: torch.Generator, rows: torch.Tensor, global_size: int) -> Any:
        """Random training transforms. `gen` is seeded by (seed, epoch, step) and draws for the whole global
        batch, of which this worker applies `rows`: resumed and distributed runs see the same transforms."""
        return batch

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {}, {}

    def load_extra_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        pass

    def artifacts(self, model: torch.nn.Module, out_dir: Path) -> list[Path]:
        return []

    # --- helpers ---------------------------------------------------------------------------------
    def _min_last(self) -> int:
        return min(self.hp.batch_size, 2 * self.rt.world_size)
