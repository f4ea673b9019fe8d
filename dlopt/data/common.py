"""Shared pieces of the data layer: in-memory datasets, seeded splits, label and override helpers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dlopt.core.errors import ConfigError, UsageError
from dlopt.data.types import DataRequest, DataSplits, InputKind, data_tensor, input_kind  # noqa: F401 (re-export)
from dlopt.models.spec import ArchSpec, Task

SPLIT_FRACTIONS = (0.7, 0.15, 0.15)  # train / validation / test
BATCH_INPUT_BYTES = 16 * 2**20  # inputs of one evaluation batch: all 256 of 3x32x32, 27 of 3x224x224


class PairDataset(Dataset):
    """In-memory (x, y) items; x is one tensor or a tuple of tensors (one per model input)."""

    def __init__(self, xs: Sequence[torch.Tensor], y: torch.Tensor) -> None:
        if any(len(x) != len(y) for x in xs):
            raise ValueError("every input tensor needs one row per target")
        self.xs, self.y = tuple(xs), y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Any, torch.Tensor]:
        if len(self.xs) == 1:
            return self.xs[0][i], self.y[i]
        return tuple(x[i] for x in self.xs), self.y[i]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, torch.Tensor]]:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        xs, y = [x[idx] for x in self.xs], self.y[idx]
        if len(xs) == 1:
            return list(zip(xs[0], y, strict=True))
        return list(zip(zip(*xs, strict=True), y, strict=True))

    def subset(self, idx: np.ndarray | torch.Tensor) -> PairDataset:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return PairDataset([x[idx] for x in self.xs], self.y[idx])


def bounded_batch(dataset: Dataset, most: int) -> int:
    """`most`, or fewer so one batch's inputs stay under BATCH_INPUT_BYTES: a model's activations grow with its
    input, so evaluating 256 images at 3x224x224 would take gigabytes where 32x32 takes megabytes."""
    if len(dataset) == 0:  # type: ignore[arg-type]
        return most
    x = dataset[0][0]
    nbytes = sum(t.numel() * t.element_size() for t in (x if isinstance(x, (tuple, list)) else (x,)))
    return max(1, min(most, BATCH_INPUT_BYTES // max(1, nbytes)))


def require_kind(req: DataRequest, accepted: Sequence[InputKind], gives: str, tasks: Sequence[Task] = ()) -> InputKind:
    """The model's input kind, or one clear error when this dataset cannot feed it."""
    kind = input_kind(req.spec)
    if kind not in accepted or (tasks and req.spec.task not in tasks):
        raise UsageError(f"dataset {req.name!r} gives {gives}, which {req.spec.name} ({req.spec.task}, "
                         f"{kind} input) cannot train on; use its default --data {req.spec.dataset}")
    return kind


def config_fields(spec: ArchSpec) -> set[str]:
    return set(getattr(spec.config, "__dataclass_fields__", {}))


def keep_fields(spec: ArchSpec, overrides: dict[str, Any]) -> dict[str, Any]:
    """Only the build options this architecture's config has."""
    fields = config_fields(spec)
    return {k: v for k, v in overrides.items() if k in fields}


def class_overrides(req: DataRequest, num_classes: int) -> dict[str, Any]:
    """num_classes for a classifier; a classifier without it has one output unit and takes 2 classes only."""
    if "num_classes" in config_fields(req.spec) or req.spec.task != Task.CLASSIFICATION:
        return keep_fields(req.spec, {"num_classes": num_classes})
    if num_classes != 2:
        raise UsageError(f"{req.spec.name} has one output unit (two classes) and dataset {req.name!r} has "
                         f"{num_classes} classes; use a two-class dataset such as --data {req.spec.dataset}")
    return {}


def class_targets(spec: ArchSpec, labels: torch.Tensor) -> torch.Tensor:
    """int64 class ids (N,), or float 0/1 of shape (N, 1) for a one-output classifier (the perceptron)."""
    labels = labels.long()
    if spec.task == Task.CLASSIFICATION and "num_classes" not in config_fields(spec):
        return labels.float().unsqueeze(1)
    return labels


def split_indices(n: int, seed: int, labels: np.ndarray | None = None,
                  fractions: tuple[float, float, float] = SPLIT_FRACTIONS) -> tuple[np.ndarray, ...]:
    """Shuffled train / val / test indices fixed by the seed; stratified per class when labels are given.

    Each class's samples are spread evenly over [0, 1) in random order, then the sorted whole is cut at the
    fractions: every split gets each class in proportion and the split sizes are exact for any class sizes.
    """
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    keys = np.empty(n)
    for group in groups:
        keys[rng.permutation(group)] = (np.arange(len(group)) + rng.random(len(group))) / max(len(group), 1)
    order = np.argsort(keys, kind="stable")
    cut_train, cut_val = int(round(n * fractions[0])), int(round(n * (fractions[0] + fractions[1])))
    parts = (order[:cut_train], order[cut_train:cut_val], order[cut_val:])
    return tuple(rng.permutation(p).astype(np.int64) for p in parts)


def apply_limit(train_idx: np.ndarray, limit: int | None) -> np.ndarray:
    if limit is None:
        return train_idx
    if limit < 1:
        raise ConfigError(f"limit must be at least 1 training sample, got {limit}")
    return train_idx[:limit]


def make_splits(data: PairDataset, idx: tuple[np.ndarray, ...], req: DataRequest, info: dict[str, Any],
                overrides: dict[str, Any]) -> DataSplits:
    """Cut a dataset by split indices, cap the training part, and record the sizes."""
    train_idx = apply_limit(idx[0], req.limit)
    train, val, test = data.subset(train_idx), data.subset(idx[1]), data.subset(idx[2])
    sizes = {"train": len(train), "val": len(val), "test": len(test)}
    base = {"name": req.name, "seed": req.seed, "sizes": sizes}
    return DataSplits(train, val, test, {**base, **info}, keep_fields(req.spec, overrides))


def sizes_of(*parts: Dataset) -> dict[str, int]:
    return dict(zip(("train", "val", "test"), (len(p) for p in parts)))  # type: ignore[arg-type]
