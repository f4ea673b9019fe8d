"""Supervised tasks: classification (accuracy), regression (MSE) and the perceptron's 0/1 labels (accuracy)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from dlopt.tasks.base import Task, register_task
from dlopt.tasks.inputs import as_inputs


@register_task
class ClassificationTask(Task):
    name = "classification"
    mode = "max"

    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, float]:
        def fn(m: torch.nn.Module, x: Any, y: torch.Tensor) -> dict[str, tuple]:
            logits = m(*as_inputs(x)).float()
            return {"loss": (F.cross_entropy(logits, y, reduction="sum"), len(y)),
                    "accuracy": ((logits.argmax(-1) == y).sum(), len(y))}

        return self.mean_over(model, split, fn)


@register_task
class RegressionTask(Task):
    name = "regression"
    mode = "min"

    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, float]:
        def fn(m: torch.nn.Module, x: Any, y: torch.Tensor) -> dict[str, tuple]:
            pred = m(*as_inputs(x)).float()
            err = F.mse_loss(pred, y.float().view_as(pred), reduction="sum") / max(1, pred[0].numel())
            return {"loss": (err, len(pred)), "mse": (err, len(pred))}

        return self.mean_over(model, split, fn)


@register_task
class PerceptronTask(Task):
    """Labels are 0/1 and the model outputs step(w.x + b): the loss is the error count."""

    name = "perceptron"
    mode = "max"

    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, float]:
        def fn(m: torch.nn.Module, x: Any, y: torch.Tensor) -> dict[str, tuple]:
            pred = m(as_inputs(x)[0].float()).view(-1)
            wrong = (pred != y.float().view(-1)).sum()
            return {"loss": (wrong, len(pred)), "accuracy": (len(pred) - wrong, len(pred))}

        return self.mean_over(model, split, fn)
