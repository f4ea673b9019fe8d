"""Input conventions shared by tasks, training and stages (no torch import)."""

from __future__ import annotations

from typing import Any


def as_inputs(x: Any) -> tuple[Any, ...]:
    """A sample's model inputs as a tuple: one tensor, or several (token ids and a mask) as the model takes them."""
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)
