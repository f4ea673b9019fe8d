"""How many channels each pruned layer keeps, and why: the width plan handed to Torch-Pruning.

By default (`round_to=None`) a layer wide enough keeps the multiple NEAREST to `width * (1 - ratio)` (rounded
to the nearest, not down, so the share removed stays close to the ratio asked for) of `ALIGN` (8), or of
`SMALL_ALIGN` (16) while the exact width is under `WIDE_FROM` (64). CPU convolution and matmul kernels run
those widths on their fast blocked paths, and odd widths such as 45 or 179 fall off them; ONNX Runtime's
AVX-512 convolutions block channels by 16, which costs a narrow layer (24 channels: half the throughput of 16
or 32) far more than a wide one (88, 360: as fast as 96, 368). benchmarks/prune_widths.py and docs/prune.md
hold the measurements. Rounding never moves a layer's share removed more than `MAX_SHIFT` (10 points) from
the ratio: where the multiple of 16 would (a 32-wide layer at 0.3: 16 kept is 50 % removed), the nearest
multiple of 8 is tried (24: 25 %), and where that would too, the layer keeps the exact ratio. That has a cost
where no multiple of 16 lies within the window: the rule keeps 24 of the cnn's 32-channel first layer, off the
AVX-512 blocked path (ORT b8 1.2-1.4x instead of 2x with 16; benchmarks/prune_cnn_b8.py); the measured table
(dlopt.prune.width_groups) times the nearest multiples of 16 beside it and keeps 16 where it is faster. A
narrow layer (exact kept width under `MIN_ROUNDED`, e.g. LeNet-5's 6 and 16 channels) keeps the exact ratio.
`round_to=1` is the exact ratio everywhere (`floor(width * (1 - ratio))`), and
`round_to=N` rounds that down to a multiple of N (Torch-Pruning's `round_to`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import nn

from dlopt.prune.config import PruneConfig

ALIGN = 8  # kernels' channel block on AVX2 CPUs (oneDNN, ONNX Runtime MLAS NCHWc); enough for wide layers
SMALL_ALIGN = 16  # the AVX-512 block: what narrow layers (exact width under WIDE_FROM) are rounded to
WIDE_FROM = 64
MIN_ROUNDED = 16  # exact kept widths below this keep the exact ratio (rounding would move the share too far)
MAX_SHIFT = 0.10  # a rounded width never removes a share further than this from the ratio (else: exact)


@dataclass(frozen=True)
class WidthChoice:
    """One prunable layer's plan: `kept` of `before` channels, and the reason for that number."""

    before: int
    exact: float  # width * (1 - ratio)
    kept: int
    why: str
    detail: dict[str, Any] | None = None  # a width from the latency table: candidates timed, the table's summary

    def ratio(self) -> float:
        """The share this layer loses, as Torch-Pruning's per-layer pruning ratio (kept + 0.5 guards the floor)."""
        return 1.0 - (self.kept + 0.5) / self.before


def choose(before: int, cfg: PruneConfig) -> WidthChoice:
    """The kept width of one layer of `before` channels under cfg.ratio and cfg.round_to."""
    exact = before * (1 - cfg.ratio)
    floor = int(exact)
    if cfg.round_to == 1:
        return WidthChoice(before, exact, floor, "exact ratio (--round-to 1)")
    if cfg.round_to:
        why = f"exact width {floor} rounded down to a multiple of {cfg.round_to} (--round-to {cfg.round_to})"
        return WidthChoice(before, exact, floor - floor % cfg.round_to, why)
    if exact < MIN_ROUNDED:
        return WidthChoice(before, exact, floor, f"narrow layer: exact ratio (under {MIN_ROUNDED} channels kept, "
                                                 f"rounding to a multiple of {ALIGN} would move the share too far)")
    refused: dict[int, str] = {}
    for align in (ALIGN,) if exact >= WIDE_FROM else (SMALL_ALIGN, ALIGN):
        nearest = align * math.floor(exact / align + 0.5)
        removed = 1 - nearest / before
        if nearest >= before:  # the ratio is too small to reach the next multiple down
            refused[nearest] = f"{nearest} would prune nothing"
        elif abs(removed - cfg.ratio) > MAX_SHIFT + 1e-9:  # e.g. 32 -> 16 at 0.3: half the layer, not 30 %
            refused[nearest] = f"{nearest} would remove {removed:.0%}, over {MAX_SHIFT * 100:g} points from the ratio"
        else:
            return WidthChoice(before, exact, nearest, f"{exact:.1f} rounded to the nearest multiple of {align} "
                                                       "(fast CPU kernels)")
    return WidthChoice(before, exact, floor, f"exact ratio: the nearest multiple ({'; '.join(refused.values())})")


def ratio_dict(module: nn.Module, plan: dict[str, WidthChoice]) -> dict[nn.Module, float]:
    """Torch-Pruning's pruning_ratio_dict for the plan (each layer its own scope: local ranking)."""
    mods = dict(module.named_modules())
    return {mods[name]: c.ratio() for name, c in plan.items()}


def force_scopes(pruner: Any, ratios: dict[nn.Module, float], steps: int) -> None:
    """Torch-Pruning (1.6) only takes pruning_ratio_dict entries for its built-in layer types; the layers of
    dlopt's customized pruners (nn.GRU, nn.RNN) are added here so they follow the plan too."""
    for i, (m, r) in enumerate(ratios.items()):
        if m not in pruner._layer_to_scope:
            pruner._layer_to_scope[m] = (f"_dlopt_scope_{i}", [m])
            pruner.pruning_ratio_dict[m] = pruner.iterative_pruning_ratio_scheduler(r, steps)
