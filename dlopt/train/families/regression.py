"""Regression (sine and other series): mean squared error, which is also the metric."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from dlopt.tasks.inputs import as_inputs
from dlopt.tasks.supervised import RegressionTask
from dlopt.train.config import HParams
from dlopt.train.family import Family, register_family


@register_family
class Regression(RegressionTask, Family):
    defaults = HParams(epochs=30, batch_size=64, lr=3e-3, weight_decay=0.0, patience=8)

    def loss(self, model: torch.nn.Module, x: Any, y: torch.Tensor) -> torch.Tensor:
        pred = model(*as_inputs(x)).float()
        return F.mse_loss(pred, y.float().view_as(pred))
