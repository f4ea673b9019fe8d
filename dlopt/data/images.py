"""Images for any model's input: channels, bilinear resize, flattening, value scaling, always per batch.

Every image source (digits, torchvision files, ImageFolder, npz) hands over base images at their own size:
a tensor (N, C, H, W), float in [0, 1] or uint8, or an indexable reader of files (FileImages). A split is an
ImageSet of row numbers into that base; items are converted to what the model eats when they are asked for,
so no split ever exists whole at the model's resolution (digits at 3x224x224 would be 1 GB; MNIST 35 GB).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from dlopt.core.errors import ConfigError
from dlopt.data.common import (
    DataRequest,
    DataSplits,
    InputKind,
    apply_limit,
    class_overrides,
    class_targets,
    data_tensor,
    keep_fields,
    require_kind,
    sizes_of,
)
from dlopt.models.registry import resolve_dims
from dlopt.models.spec import Task

FLAT_SIDE = 28  # flat models that do not say their side get 28 x 28 = 784 features, as in MNIST
STATS_BYTES = 256 * 2**20  # standardisation uses the first training images whose converted size fits here...
STATS_MIN_SAMPLES = 256  # ...and at least these; they are converted STATS_CHUNK at a time
STATS_CHUNK = 64
LUMA = (0.299, 0.587, 0.114)  # RGB -> grey (ITU-R 601)


class BaseImages(Protocol):
    """Source images indexed by a 1-D LongTensor of rows -> (n, C, H, W) uint8 or float in [0, 1]."""

    def __len__(self) -> int: ...

    def __getitem__(self, rows: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class ImageGeometry:
    channels: int
    size: int
    flat: bool  # (C*S*S,) instead of (C, S, S)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.channels * self.size * self.size,) if self.flat else (self.channels, self.size, self.size)


def image_geometry(req: DataRequest) -> tuple[ImageGeometry, dict[str, Any]]:
    """The image shape the model takes, and the build options that give a flat model 28 x 28 inputs."""
    kind = require_kind(req, (InputKind.IMAGE, InputKind.VECTOR), "images",
                        (Task.CLASSIFICATION, Task.GENERATION, Task.RECONSTRUCTION))
    t = data_tensor(req.spec)
    if kind == InputKind.IMAGE:
        _, channels, height, width = resolve_dims(t.shape, req.cfg, 1, 1)
        if height != width:
            raise ConfigError(f"{req.spec.name} takes {height}x{width} images; dlopt's image data is square")
        return ImageGeometry(channels, height, flat=False), {}
    field = t.shape[1]
    features = int(getattr(req.cfg, field)) if isinstance(field, str) else int(field)
    side = math.isqrt(features)
    if side * side == features and side >= 4:  # a square number of features: a side x side grey image
        return ImageGeometry(1, side, flat=True), {}
    if not isinstance(field, str):
        raise ConfigError(f"{req.spec.name} takes {features} features, not a square image; use its default data")
    return ImageGeometry(1, FLAT_SIDE, flat=True), {field: FLAT_SIDE * FLAT_SIDE}


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def convert(images: torch.Tensor, geom: ImageGeometry) -> torch.Tensor:
    """(N, C0, H, W) base images -> (N, *geom.shape), values still in [0, 1]."""
    x = to_unit_float(images)
    channels = x.shape[1]
    if channels == 3 and geom.channels == 1:
        x = (x * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    elif channels == 1 and geom.channels > 1:
        x = x.expand(-1, geom.channels, -1, -1)
    elif channels != geom.channels:
        raise ConfigError(f"images have {channels} channels and the model takes {geom.channels}; "
                          "set in_channels to 1 or 3")
    if x.shape[-2:] != (geom.size, geom.size):
        shrink = x.shape[-1] > geom.size
        x = F.interpolate(x, size=(geom.size, geom.size), mode="bilinear", align_corners=False, antialias=shrink)
        x = x.clamp(0.0, 1.0)  # bilinear weights are convex; clamp only rounding
    return x.reshape(len(x), *geom.shape).contiguous()


class ImageSet(Dataset):
    """One split: rows of the base images and their targets, converted to the model's input when read.

    `__getitems__` (torch's batched fetch, used by DataLoader and the training families' collate) converts a
    whole batch in one resize; memory is the base images plus the batch being read.
    """

    def __init__(self, base: BaseImages, rows: torch.Tensor, y: torch.Tensor, geom: ImageGeometry,
                 scale: tuple[float, float]) -> None:
        if len(rows) != len(y):
            raise ValueError("every row needs one target")
        self.base, self.rows, self.y, self.geom, self.scale = base, rows.long(), y, geom, scale

    def __len__(self) -> int:
        return len(self.y)

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        """(n, *geom.shape) model inputs of these items, scaled."""
        return convert(self.base[self.rows[idx]], self.geom) * self.scale[0] + self.scale[1]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = range(len(self))[i]  # negative indices, and IndexError past the end (iteration stops there)
        return self.images(torch.tensor([i]))[0], self.y[i]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        x = self.images(idx)
        return list(zip(x, self.y[idx], strict=True))


def value_scale(base: BaseImages, rows: torch.Tensor, geom: ImageGeometry,
                value_range: tuple[float, float] | None) -> tuple[tuple[float, float], dict[str, Any]]:
    """(multiply, add) applied to [0, 1] pixels: onto value_range, or standardised by training statistics."""
    if value_range is not None:
        low, high = float(value_range[0]), float(value_range[1])
        if not high > low:
            raise ConfigError(f"value_range must be (low, high) with low < high, got {value_range}")
        return (high - low, low), {"value_range": [low, high]}
    count = max(STATS_MIN_SAMPLES, STATS_BYTES // (4 * math.prod(geom.shape)))
    total, squares, n = 0.0, 0.0, 0
    for start in range(0, min(count, len(rows)), STATS_CHUNK):  # a chunk at a time: 224 x 224 needs 445 images
        chunk = convert(base[rows[start:min(count, start + STATS_CHUNK)]], geom).double()
        total, squares, n = total + float(chunk.sum()), squares + float((chunk * chunk).sum()), n + chunk.numel()
    mean = total / max(n, 1)
    var = (squares - n * mean * mean) / max(n - 1, 1)  # unbiased, as torch.std
    std = math.sqrt(var) if var > 1e-16 else 1.0
    return (1.0 / std, -mean / std), {"standardised": {"mean": mean, "std": std}}


def image_splits(req: DataRequest, base: BaseImages, labels: torch.Tensor, idx: tuple[np.ndarray, ...],
                 info: dict[str, Any]) -> DataSplits:
    """Base images + integer labels + split indices -> DataSplits shaped, scaled and typed for req.spec."""
    geom, overrides = image_geometry(req)
    num_classes = len(info["classes"]) if "classes" in info else int(labels.max()) + 1
    overrides.update(class_overrides(req, num_classes))
    y = class_targets(req.spec, labels)
    scale, scale_info = value_scale(base, torch.as_tensor(idx[0]), geom, req.value_range)  # the whole train split
    parts = [ImageSet(base, torch.as_tensor(i), y[torch.as_tensor(i)], geom, scale)
             for i in (apply_limit(idx[0], req.limit), idx[1], idx[2])]
    meta = {"name": req.name, "seed": req.seed, "sizes": sizes_of(*parts), "num_classes": num_classes,
            "input_shape": list(geom.shape), "resize": "bilinear", **scale_info, **info}
    return DataSplits(parts[0], parts[1], parts[2], meta, keep_fields(req.spec, overrides))
