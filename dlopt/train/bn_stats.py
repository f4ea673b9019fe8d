"""BatchNorm statistics re-estimated before each evaluation, for runs too short for their running averages.

A BatchNorm layer's running mean and variance are exponential averages: after t training steps at momentum m the
value they started from (mean 0, variance 1) still weighs (1 - m)^t ~ exp(-m t). torchvision's MNASNet uses
m = 0.0003 (1 - 0.9997): after 190 steps the averages are still 94 % their initial values, so every eval-mode
output (validation, test, exported files) is garbage although training converged. The rule: where
m * (the run's planned steps) < SETTLE for some layer, the initial value would still weigh over exp(-3) ~ 5 %
at the end, so before every validation the statistics are recomputed on training batches as
torch.optim.swa_utils.update_bn does (momentum None: a plain average over batches, in train mode, no grad).
The rule holds for a whole run, so every epoch's validation is measured alike and early stopping compares like
with like. At the default momentum 0.1, a run of 30 steps or more is untouched (trains exactly as before).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from dlopt.core.warn import count
from dlopt.train.family import Family
from dlopt.train.state import rng_state, set_rng_state

SETTLE = 3.0  # m * steps below this: the initial statistics still weigh over exp(-3) ~ 5 %
MAX_BATCHES = 50  # training batches per re-estimation: a bounded cost per epoch


def _tracking(model: torch.nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats
            and m.running_mean is not None]


@dataclass(frozen=True)
class BNRefresh:
    """How a run re-estimates its BatchNorm statistics: on `batches` fixed, un-augmented training batches."""

    batches: int
    momentum: float  # the slowest layer's
    steps: int  # the run's planned optimizer steps

    @property
    def note(self) -> str:
        batches = f"{self.batches} training batch" + ("" if self.batches == 1 else "es")
        return (f"BatchNorm statistics re-estimated on {batches} before each evaluation: momentum "
                f"{self.momentum:g} cannot settle in {count(self.steps, 'step')} (needs ~{SETTLE / self.momentum:.0f})")


def plan(family: Any, model: torch.nn.Module, total_steps: int) -> BNRefresh | None:
    """A BNRefresh where some BatchNorm layer's running averages cannot settle in `total_steps`, else None
    (also for families without a per-batch `loss`, such as GAN and DQN, and for runs without training data)."""
    momenta = [m.momentum for m in _tracking(model) if m.momentum is not None]  # None: already a plain average
    if not momenta or type(family).loss is Family.loss or getattr(family.data, "train", None) is None:
        return None
    slowest = min(momenta)
    if slowest * total_steps >= SETTLE:
        return None
    full, rest = divmod(len(family.data.train), family.hp.batch_size)
    batches = full + (rest >= 2 or full == 0)  # a last batch of one sample gives BatchNorm no variance: left out
    return BNRefresh(min(MAX_BATCHES, batches), slowest, total_steps)


def _batches(family: Any, limit: int) -> Iterator[Any]:
    """The same `limit` whole batches every time (seeded order, no augmentation): every worker computes the same
    statistics, and a resumed run the same as an uninterrupted one."""
    n, bs = len(family.data.train), family.hp.batch_size
    order = torch.randperm(n, generator=torch.Generator().manual_seed(family.seed))
    for start in range(0, min(n, limit * bs), bs):
        yield family.collate(family.data.train, order[start:start + bs])


def refresh(refresh_plan: BNRefresh, family: Any, model: torch.nn.Module) -> None:
    """Recompute every BatchNorm layer's running statistics for the current weights; momenta, train/eval mode and
    the RNG (dropout draws) are left as they were, so training goes on exactly as without this."""
    layers = _tracking(model)
    momenta = [m.momentum for m in layers]
    was_training, rng = model.training, rng_state()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        with torch.no_grad(), family.rt.autocast():
            for x, y in _batches(family, refresh_plan.batches):
                family.loss(model, x, y)
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
        set_rng_state(rng)
