"""Training's PNG artifacts: sample grids of generative models (the learning curve is in dlopt.core.plotting)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dlopt.core.plotting import pyplot, save_png


def sample_grid(images: Any, path: Path, title: str, value_range: tuple[float, float]) -> Path:
    """images: (N, H*W) or (N, C, H, W) tensor -> a square grid PNG."""
    plt = pyplot()
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
    return save_png(fig, path)
