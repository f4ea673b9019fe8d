"""Training: one loop per task family (chosen by `spec.trainer`), shared epochs / checkpoints / resume,
and data-parallel workers through torchrun. `train(TrainConfig(...))` is the one entry point.

Importing this package does not import torch; `train` does.
"""

from __future__ import annotations

from typing import Any

from dlopt.train.config import HParams, OptimizerName, TrainConfig

__all__ = ["HParams", "OptimizerName", "TrainConfig", "train", "list_families"]


def train(cfg: TrainConfig, data: Any = None, on_epoch: Any = None) -> Any:
    from dlopt.train.api import train as _train

    return _train(cfg, data, on_epoch)


def list_families() -> list[str]:
    from dlopt.train.families import list_families as _list

    return _list()
