"""dlopt: train, prune, quantize, export, verify and benchmark PyTorch models.

The top-level package stays free of torch so that `dlopt --help` and `dlopt list` start fast;
import the stage modules (``dlopt.models``, ``dlopt.models.checkpoint``) when you need them. The registry functions
below are imported on first use (``dlopt.build_model``): the model table is not read to print the CLI's help.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from dlopt.core.errors import DloptError  # noqa: E402

_REGISTRY = ("build_model", "get_spec", "list_specs", "make_inputs")
__all__ = ["DloptError", "__version__", *_REGISTRY]


def __getattr__(name: str) -> Any:
    """`dlopt.build_model` and friends, from dlopt.models.registry when first asked for (PEP 562)."""
    if name in _REGISTRY:
        from dlopt.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'dlopt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_REGISTRY})
