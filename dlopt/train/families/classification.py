"""Classification (images, tabular, text): cross-entropy; metric accuracy.

Image batches get a small random affine transform per sample (rotation, scale, shift): the bundled
digits are only 1,257 training images, and handwriting varies in exactly these ways.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from dlopt.tasks.inputs import as_inputs
from dlopt.tasks.supervised import ClassificationTask
from dlopt.train.config import HParams
from dlopt.train.family import Family, register_family

MAX_ROTATION = math.radians(10.0)
MAX_SCALE = 0.1  # +-10 %
MAX_SHIFT = 0.08  # of the image side


def random_affine(x: torch.Tensor, gen: torch.Generator, rows: torch.Tensor, global_size: int) -> torch.Tensor:
    """(B, C, H, W) -> the same images rotated, scaled and shifted; edges repeat the border (background)."""
    draws = torch.rand(global_size, 4, generator=gen)[rows].to(x.device) * 2 - 1  # (B, 4) in [-1, 1)
    angle, scale = draws[:, 0] * MAX_ROTATION, 1 + draws[:, 1] * MAX_SCALE
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    shift = draws[:, 2:] * MAX_SHIFT * 2  # normalised coordinates span 2
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


@register_family
class Classification(ClassificationTask, Family):
    defaults = HParams(epochs=15, batch_size=64, lr=2e-3, patience=6)

    def augment(self, batch: Any, gen: torch.Generator, rows: torch.Tensor, global_size: int) -> Any:
        x, y = batch
        if self.hp.augment and isinstance(x, torch.Tensor) and x.dim() == 4 and x.is_floating_point():
            x = random_affine(x, gen, rows, global_size)
        return x, y

    def loss(self, model: torch.nn.Module, x: Any, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(*as_inputs(x)).float(), y)
