"""Training data without network access: bundled digits, generated tasks, and the user's own files.

    splits = load_data(spec, cfg)                   # the spec's default dataset (spec.dataset)
    splits = load_data(spec, cfg, "npz", path=p)    # the user's X / y arrays
    cfg = dataclasses.replace(cfg, **splits.config_overrides)   # build the model to fit the data

Items are (x, y); x is one tensor, or a tuple in the order of spec.inputs (bert: input_ids, attention_mask).
docs/data.md describes every dataset, the generated grammars and the file formats.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from dlopt.core.errors import UnsupportedError, UsageError
from dlopt.data.types import DataRequest, DataSplits, InputKind, input_kind
from dlopt.models.spec import ArchSpec

# name -> "module:function" of its loader, imported lazily; files.py loads the user's formats.
_LOADERS: dict[str, str] = {
    "digits": "dlopt.data.digits:load_digits_splits",
    "tabular": "dlopt.data.synthetic:load_tabular",
    "sine": "dlopt.data.synthetic:load_sine",
    "gates": "dlopt.data.synthetic:load_gate",
    "and": "dlopt.data.synthetic:load_gate",
    "or": "dlopt.data.synthetic:load_gate",
    "blobs": "dlopt.data.synthetic:load_blobs",
    "text": "dlopt.data.text:load_text",
    "seq2seq": "dlopt.data.seq2seq:load_seq2seq",
    "imagefolder": "dlopt.data.files:load_imagefolder",
    "mnist": "dlopt.data.files:load_torchvision",
    "fashionmnist": "dlopt.data.files:load_torchvision",
    "cifar10": "dlopt.data.files:load_torchvision",
    "npz": "dlopt.data.arrays:load_npz",
    "csv": "dlopt.data.arrays:load_csv",
}
FILE_DATASETS = frozenset({"imagefolder", "mnist", "fashionmnist", "cifar10", "npz", "csv"})  # need path=
ENVIRONMENTS = frozenset({"cartpole"})  # driven by their trainer through gymnasium, not loaded here

__all__ = ["DataSplits", "DataRequest", "InputKind", "input_kind", "list_datasets", "load_data"]


def list_datasets() -> list[str]:
    """Every name load_data accepts (the file formats need path=)."""
    return list(_LOADERS)


def load_data(spec: ArchSpec, cfg: Any, name: str | None = None, *, path: Path | None = None, seed: int = 0,
              limit: int | None = None, value_range: tuple[float, float] | None = None) -> DataSplits:
    """Train / val / test splits (fixed by seed) shaped for spec and cfg; limit caps the training samples.

    value_range maps pixel data onto [low, high] (Tanh models: (-1, 1)); by default images are standardised.
    """
    name = (name or spec.dataset).lower()
    if name in ENVIRONMENTS:
        raise UnsupportedError(f"{name!r} is an environment, not a dataset: the {spec.trainer or 'dqn'} trainer "
                               "runs it through gymnasium itself; train dqn without --data")
    if name not in _LOADERS:
        raise UsageError(f"unknown dataset {name!r}; valid: {', '.join(_LOADERS)}")
    if name in FILE_DATASETS and path is None:
        raise UsageError(f"dataset {name!r} reads your files: give the path to your files (load_data(..., path=PATH))")
    if name not in FILE_DATASETS and path is not None:
        raise UsageError(f"dataset {name!r} is built in and takes no path; for your files use one of "
                         f"{', '.join(sorted(FILE_DATASETS))}")
    module, _, attr = _LOADERS[name].partition(":")
    loader = getattr(importlib.import_module(module), attr)
    req = DataRequest(spec, cfg, name, Path(path) if path is not None else None, seed, limit, value_range)
    return loader(req)
