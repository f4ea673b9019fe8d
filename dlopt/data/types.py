"""The data layer's types and what a model eats, read from its spec. No torch here: the CLI imports it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlopt.models.spec import BATCH, SEQ, ArchSpec, Task, TensorSpec

if TYPE_CHECKING:
    from torch.utils.data import Dataset


@dataclass(frozen=True)
class DataSplits:
    """Train / validation / test datasets of (x, y) items, with what the model must be built with to fit them."""

    train: Dataset  # items (x, y): x a Tensor, or a tuple of Tensors in the order of spec.inputs
    val: Dataset
    test: Dataset
    info: dict[str, Any]  # JSON-ready: name, description, sizes, num_classes, vocab sizes, special ids, source
    config_overrides: dict[str, Any]  # build options the model needs for this data (only keys spec.config has)


@dataclass(frozen=True)
class DataRequest:
    """load_data's arguments, passed to one dataset's loader."""

    spec: ArchSpec
    cfg: Any
    name: str
    path: Path | None = None
    seed: int = 0
    limit: int | None = None
    value_range: tuple[float, float] | None = None


class InputKind(StrEnum):
    """What a model's data tensor looks like; decides which datasets can feed it."""

    IMAGE = "image"  # (B, C, S, S) float
    VECTOR = "vector"  # (B, F) float
    SERIES = "series"  # (B, T, F) float
    TOKENS = "tokens"  # (B, T) int64 token ids
    SEQ2SEQ = "seq2seq"  # source ids (B, S) int64, or one-hot (B, S, V) float
    NONE = "none"  # an environment (reinforcement learning) or an unknown model


def data_tensor(spec: ArchSpec) -> TensorSpec:
    """The tensor the data fills: a generator's output (its input is noise), else the first input."""
    return spec.outputs[0] if spec.task == Task.GENERATION else spec.inputs[0]


def input_kind(spec: ArchSpec) -> InputKind:
    if spec.task in (Task.REINFORCEMENT, Task.CUSTOM) or not spec.inputs:
        return InputKind.NONE
    t = data_tensor(spec)
    if spec.task == Task.SEQ2SEQ:
        return InputKind.SEQ2SEQ
    if t.dtype.startswith("int"):
        return InputKind.TOKENS
    if len(t.shape) == 4:
        return InputKind.IMAGE
    if len(t.shape) == 3 and t.shape[1] == SEQ:
        return InputKind.SERIES
    if len(t.shape) == 2 and t.shape[0] == BATCH:
        return InputKind.VECTOR
    return InputKind.NONE
