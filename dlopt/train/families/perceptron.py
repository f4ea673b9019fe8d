"""The perceptron rule (no gradients): for each sample, w += lr * (y - y_hat) * x and b += lr * (y - y_hat).

It converges on linearly separable data (AND, OR, separable blobs) and cannot on XOR, which is the point
the articles make. Labels are 0/1; the model outputs step(w.x + b).
"""

from __future__ import annotations

from typing import Any

import torch

from dlopt.tasks.inputs import as_inputs
from dlopt.tasks.supervised import PerceptronTask
from dlopt.train.config import HParams
from dlopt.train.family import Family, register_family


@register_family
class Perceptron(PerceptronTask, Family):
    distributed = False
    defaults = HParams(epochs=20, batch_size=1, lr=0.1, weight_decay=0.0, clip_norm=0.0, patience=5)

    def optimizers(self, model: torch.nn.Module) -> dict[str, torch.optim.Optimizer]:
        return {}  # the rule updates the weights itself

    @torch.no_grad()
    def train_step(self, model: torch.nn.Module, batch: Any, opts: dict, weight: float) -> dict[str, float]:
        x, y = batch
        x = as_inputs(x)[0].float()
        linear = model.linear
        mistakes = 0
        for xi, yi in zip(x, y.float().view(-1)):
            err = float(yi) - float(linear(xi) >= 0)
            if err:
                linear.weight += self.hp.lr * err * xi
                linear.bias += self.hp.lr * err
                mistakes += 1
        return {"loss": mistakes / max(1, len(x))}  # the rule's loss: the fraction of mistakes
