"""Task families: one training loop each, registered by name and chosen by `spec.trainer`.

A family says how to compute a step's loss, how to evaluate a split (returning the spec's metric),
which direction of the metric is better, and which artifacts it leaves (sample grids). The engine
(`dlopt.train.engine`) owns everything else: epochs, schedule, early stopping, checkpoints, resume.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch

from dlopt.errors import UnsupportedError
from dlopt.spec import ArchSpec
from dlopt.train.config import HParams, OptimizerName
from dlopt.train.runtime import Runtime, eval_mode, shard

_FAMILIES: dict[str, type[Family]] = {}


class NonFiniteLoss(Exception):
    """A step's loss was NaN or infinite: the engine stops and keeps the last good checkpoint."""

    def __init__(self, epoch: int, step: int, stats: dict[str, float]) -> None:
        super().__init__(f"loss became {stats} at epoch {epoch + 1}, step {step + 1}")
        self.epoch, self.step, self.stats = epoch, step, stats
EVAL_BATCH = 256


def register_family(cls: type[Family]) -> type[Family]:
    _FAMILIES[cls.name] = cls
    return cls


def get_family(spec: ArchSpec) -> type[Family]:
    import dlopt.train.families  # noqa: F401  (registration)

    if not spec.trainer:
        raise UnsupportedError(f"{spec.name} cannot be trained by dlopt: {spec.why_not('train')}")
    if spec.trainer not in _FAMILIES:
        raise UnsupportedError(f"{spec.name} names the unknown training loop {spec.trainer!r}; "
                               f"known loops: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[spec.trainer]


def list_families() -> list[str]:
    import dlopt.train.families  # noqa: F401

    return sorted(_FAMILIES)


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


def inputs_tuple(x: Any) -> tuple[torch.Tensor, ...]:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


class Family:
    name: ClassVar[str] = ""
    mode: ClassVar[str] = "max"  # "max" / "min": better validation metric; "last": keep the last epoch
    distributed: ClassVar[bool] = True
    uses_data: ClassVar[bool] = True
    value_range: ClassVar[tuple[float, float] | None] = None  # asked of the data layer (Tanh / Sigmoid outputs)
    defaults: ClassVar[HParams] = HParams()

    def __init__(self, spec: ArchSpec, model_cfg: Any, data: Any, hp: HParams, rt: Runtime, seed: int) -> None:
        self.spec, self.model_cfg, self.data, self.hp, self.rt, self.seed = spec, model_cfg, data, hp, rt, seed
        self.info: dict[str, Any] = dict(getattr(data, "info", {}) or {})

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

    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, float]:
        raise NotImplementedError

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

    def collate(self, dataset: Any, indices: Any) -> Any:
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
