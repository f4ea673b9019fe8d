"""Pruning: structured (channels, neurons and heads physically removed, via Torch-Pruning) and unstructured
(global magnitude, made permanent). Importing this package does not import torch; the functions below load
their modules on first use."""

from __future__ import annotations

import importlib
from typing import Any

from dlopt.prune.config import Importance, PruneConfig, PruneMethod

_LAZY = {"run_prune": "dlopt.prune.stage", "PruneOutcome": "dlopt.prune.stage", "prune_model": "dlopt.prune.model"}

__all__ = ["Importance", "PruneConfig", "PruneMethod", "PruneOutcome", "prune_model", "run_prune"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dlopt.prune' has no attribute {name!r}")
