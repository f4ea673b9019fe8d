"""Regression (sine and other series): mean squared error, which is also the metric."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from dlopt.train.config import HParams
from dlopt.train.family import Family, inputs_tuple, register_family


@register_family
class Regression(Family):
    name = "regression"
    mode = "min"
    defaults = HParams(epochs=30, batch_size=64, lr=3e-3, weight_decay=0.0, patience=8)

    def loss(self, model: torch.nn.Module, x: Any, y: torch.Tensor) -> torch.Tensor:
        pred = model(*inputs_tuple(x)).float()
        return F.mse_loss(pred, y.float().view_as(pred))

    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, float]:
        def fn(m: torch.nn.Module, x: Any, y: torch.Tensor) -> dict[str, tuple]:
            pred = m(*inputs_tuple(x)).float()
            err = F.mse_loss(pred, y.float().view_as(pred), reduction="sum") / max(1, pred[0].numel())
            return {"loss": (err, len(pred)), "mse": (err, len(pred))}

        return self.mean_over(model, split, fn)
