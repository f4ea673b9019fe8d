"""Autoencoder: reconstruction MSE on images scaled to [-1, 1] (the decoder ends in Tanh)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from dlopt.train.config import HParams
from dlopt.train.family import Family, register_family


def first(x: Any) -> torch.Tensor:
    return x[0] if isinstance(x, (tuple, list)) else x


@register_family
class Autoencoder(Family):
    name = "autoencoder"
    mode = "min"
    value_range = (-1.0, 1.0)
    defaults = HParams(epochs=40, batch_size=64, lr=2e-3, weight_decay=0.0, patience=8)

    def loss(self, model: torch.nn.Module, x: Any, y: Any) -> torch.Tensor:
        x = first(x).flatten(1)
        return F.mse_loss(model(x).float(), x)

    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, float]:
        def fn(m: torch.nn.Module, x: Any, y: Any) -> dict[str, tuple]:
            x = first(x).flatten(1)
            err = F.mse_loss(m(x).float(), x, reduction="none").mean(1).sum()
            return {"loss": (err, len(x)), "mse": (err, len(x))}

        return self.mean_over(model, split, fn)
