"""PNG artifacts: the learning curve (losses and validation metric per epoch) and sample grids."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dlopt.fileio import atomic_path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display here, and none needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def learning_curve(history: list[dict[str, Any]], metric: str, path: Path, title: str) -> Path:
    """Left: every training loss logged (train_*loss: GAN's d_loss and g_loss too), right: the validation metric."""
    plt = _pyplot()
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
    return _save(fig, path)


def sample_grid(images: Any, path: Path, title: str, value_range: tuple[float, float]) -> Path:
    """images: (N, H*W) or (N, C, H, W) tensor -> a square grid PNG."""
    plt = _pyplot()
    images = images.detach().float().cpu()
    if images.dim() == 2:
        side = math.isqrt(images.shape[1])
        images = images[:, : side * side].reshape(-1, 1, side, side)
    n = images.shape[0]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.8, rows * 0.8 + 0.4))
    for i, ax in enumerate(getattr(axes, "flat", [axes])):
        ax.axis("off")
        if i < n:
            img = images[i].permute(1, 2, 0).squeeze(-1).numpy()
            ax.imshow(img, cmap="gray", vmin=value_range[0], vmax=value_range[1])
    fig.suptitle(title)
    return _save(fig, path)
