"""Resumable training state without pickle: `train_state.safetensors` holds every tensor (weights, optimizer
moments, RNG states, the family's own tensors) and, in its header, the record of everything else (epoch,
best metric, history, scheduler and optimizer settings); `train_state.json` is a readable copy of the record.
Nested state dicts are flattened; each tensor's place in the record is a {"tensor": key} reference, so
both halves rebuild the exact objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dlopt.core.errors import InputFileError
from dlopt.core.fileio import atomic_path, sha256_file, write_json_atomic

STATE_STEM = "train_state"
STATE_FORMAT = "dlopt-train-state"


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    best_loss: float | None = None  # validation loss at the best epoch: breaks ties of the metric
    history: list[dict[str, Any]] = field(default_factory=list)


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous().clone()
        return {"tensor": prefix}
    if isinstance(obj, dict):  # keys may be ints (optimizer state): keep their type
        return {"dict": [[k, _flatten(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        kind = "list" if isinstance(obj, list) else "tuple"
        return {kind: [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"value": obj}
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} without pickle")


def _unflatten(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    (kind, value), = node.items()
    if kind == "tensor":
        return tensors[value]
    if kind == "dict":
        return {k: _unflatten(v, tensors) for k, v in value}
    if kind in ("list", "tuple"):
        items = [_unflatten(v, tensors) for v in value]
        return items if kind == "list" else tuple(items)
    return value


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def has_state(run_dir: Path) -> bool:
    """True once an epoch has been saved (a run killed before its first epoch ends has none)."""
    return (Path(run_dir) / f"{STATE_STEM}.safetensors").is_file()


def save_state(out_dir: Path, objects: dict[str, Any], progress: TrainState) -> Path:
    """objects: name -> a state dict (model, optimizers, schedulers, rng, family).

    One atomic write commits the state: the record travels inside the safetensors header, so a process
    killed at any moment leaves either the previous epoch's state or the new one, never a mix.
    train_state.json is a readable copy written after it (and checked against it by sha256).
    """
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    tree = {name: _flatten(obj, name, tensors) for name, obj in objects.items()}
    record = {"format": STATE_FORMAT, "epoch": progress.epoch, "best": progress.best,
              "best_epoch": progress.best_epoch, "bad_epochs": progress.bad_epochs, "best_loss": progress.best_loss,
              "history": progress.history, "objects": tree}
    weights = out_dir / f"{STATE_STEM}.safetensors"
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp), metadata={STATE_FORMAT: json.dumps(record)})
    write_json_atomic(out_dir / f"{STATE_STEM}.json", {**record, "sha256": sha256_file(weights)})
    return out_dir / f"{STATE_STEM}.json"


def _read(weights: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and the record stored in their header (older states: the record is train_state.json)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt") as fh:
            header = (fh.metadata() or {}).get(STATE_FORMAT)
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputFileError(f"{weights} is corrupt or truncated ({exc}); the run cannot be resumed, "
                             "train again") from None
    if header is not None:
        return tensors, json.loads(header)
    record_path = weights.with_suffix(".json")
    try:
        record = json.loads(record_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{record_path} is not valid JSON ({exc}); the run cannot be resumed") from None
    if record.get("format") != STATE_FORMAT or record.get("sha256") != sha256_file(weights):
        raise InputFileError(f"{record_path} does not match {weights.name}; the state is damaged, train again")
    return tensors, record


def saved_progress(run_dir: Path) -> TrainState | None:
    """How far a run got (epochs done, best, early-stop count), read from the state's header without loading
    its tensors; None when no epoch was saved yet."""
    from safetensors import SafetensorError, safe_open

    weights = Path(run_dir) / f"{STATE_STEM}.safetensors"
    if not weights.is_file():
        return None
    try:
        with safe_open(str(weights), framework="pt") as fh:
            header = (fh.metadata() or {}).get(STATE_FORMAT)
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputFileError(f"{weights} is corrupt or truncated ({exc}); the run cannot be resumed, "
                             "train again") from None
    record = json.loads(header) if header is not None else _read(weights)[1]
    return TrainState(record["epoch"], record["best"], record["best_epoch"], record["bad_epochs"],
                      record.get("best_loss"), record["history"])


def load_state(run_dir: Path) -> tuple[dict[str, Any], TrainState]:
    weights = Path(run_dir) / f"{STATE_STEM}.safetensors"
    if not weights.is_file():
        raise InputFileError(f"{run_dir} has no training state ({STATE_STEM}.safetensors) to resume; "
                             "give a run directory written by dlopt train")
    tensors, record = _read(weights)
    if record.get("format") != STATE_FORMAT:
        raise InputFileError(f"{weights} is not a dlopt training state; give a run directory written by dlopt train")
    objects = {name: _unflatten(node, tensors) for name, node in record["objects"].items()}
    progress = TrainState(record["epoch"], record["best"], record["best_epoch"], record["bad_epochs"],
                          record.get("best_loss"), record["history"])
    return objects, progress
