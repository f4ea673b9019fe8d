"""Resumable training state without pickle: `train_state.safetensors` (every tensor: weights, optimizer
moments, RNG states, the family's own tensors) + `train_state.json` (everything else: epoch, best metric,
history, scheduler and optimizer settings). Nested state dicts are flattened; each tensor's place in the
JSON is a {"tensor": key} reference, so both halves rebuild the exact objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dlopt.errors import InputFileError
from dlopt.fileio import atomic_path, sha256_file, write_json_atomic

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


def save_state(out_dir: Path, objects: dict[str, Any], progress: TrainState) -> Path:
    """objects: name -> a state dict (model, optimizers, schedulers, rng, family). Atomic, tensors first."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    tree = {name: _flatten(obj, name, tensors) for name, obj in objects.items()}
    weights = out_dir / f"{STATE_STEM}.safetensors"
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp))
    record = {"format": STATE_FORMAT, "sha256": sha256_file(weights), "epoch": progress.epoch, "best": progress.best,
              "best_epoch": progress.best_epoch, "bad_epochs": progress.bad_epochs, "best_loss": progress.best_loss, "history": progress.history,
              "objects": tree}
    write_json_atomic(out_dir / f"{STATE_STEM}.json", record)
    return out_dir / f"{STATE_STEM}.json"


def load_state(run_dir: Path) -> tuple[dict[str, Any], TrainState]:
    from safetensors.torch import load_file

    record_path, weights = run_dir / f"{STATE_STEM}.json", run_dir / f"{STATE_STEM}.safetensors"
    if not record_path.is_file() or not weights.is_file():
        raise InputFileError(f"{run_dir} has no training state ({STATE_STEM}.json/.safetensors) to resume; "
                             "give a run directory written by dlopt train")
    try:
        record = json.loads(record_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{record_path} is not valid JSON ({exc}); the run cannot be resumed") from None
    if record.get("format") != STATE_FORMAT or record.get("sha256") != sha256_file(weights):
        raise InputFileError(f"{record_path} does not match {weights.name}; the state is damaged, train again")
    tensors = load_file(str(weights))
    objects = {name: _unflatten(node, tensors) for name, node in record["objects"].items()}
    progress = TrainState(record["epoch"], record["best"], record["best_epoch"], record["bad_epochs"],
                          record.get("best_loss"), record["history"])
    return objects, progress
