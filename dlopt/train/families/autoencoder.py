"""Autoencoder: reconstruction MSE on images scaled to [-1, 1] (the decoder ends in Tanh)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from dlopt.tasks.generative import AutoencoderTask, first
from dlopt.train.config import HParams
from dlopt.train.family import Family, register_family


@register_family
class Autoencoder(AutoencoderTask, Family):
    defaults = HParams(epochs=40, batch_size=64, lr=2e-3, weight_decay=0.0, patience=8)

    def loss(self, model: torch.nn.Module, x: Any, y: Any) -> torch.Tensor:
        x = first(x).flatten(1)
        return F.mse_loss(model(x).float(), x)
