"""PNG plotting shared by the stages and the report: a headless pyplot, an atomic save, the learning curve.

The learning curve lives here, not in dlopt.train, because `dlopt report` redraws it from a run's metrics.jsonl
and the report must not import the training package for it. matplotlib is imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlopt.core.fileio import atomic_path


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display here, and none needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: Path) -> Path:
    """Write `fig` to `path` atomically (a reader never sees half a PNG), then close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return path


def learning_curve(history: list[dict[str, Any]], metric: str, path: Path, title: str) -> Path:
    """Left: every training loss logged (train_*loss: GAN's d_loss and g_loss too), right: the validation metric."""
    plt = pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    losses = sorted({k for row in history for k in row if k.startswith("train_") and k.endswith("loss")})
    for key in losses:
        label = "training " + key.removeprefix("train_").removesuffix("loss").replace("_", " ").strip()
        left.plot(epochs, [row.get(key) for row in history], marker=".", label=label.strip() + " loss")
    if "val_loss" in (history[0] if history else {}):
        left.plot(epochs, [row.get("val_loss") for row in history], marker=".", label="validation loss")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    right.plot(epochs, [row.get(f"val_{metric}") for row in history], marker=".", color="tab:green")
    right.set_xlabel("epoch")
    right.set_ylabel(f"validation {metric}")
    fig.suptitle(title)
    return save_png(fig, path)
