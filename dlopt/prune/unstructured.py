"""Unstructured pruning: the smallest weights (globally ranked by |w|) set to zero, permanently.

Shapes do not change, so dense kernels do not get faster: the report shows it. During fine-tuning a
gradient mask keeps pruned weights at exactly zero (Adam and SGD moments of a zero gradient stay zero).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

WEIGHT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LSTM, nn.GRU, nn.RNN)


def prunable_weights(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The weight matrices of Linear / Conv / recurrent layers (biases and norms are left dense)."""
    out = []
    for name, m in module.named_modules():
        if isinstance(m, WEIGHT_TYPES):
            out += [(f"{name}.{p}" if name else p, w) for p, w in m.named_parameters(recurse=False)
                    if p.startswith("weight")]
    return out


@torch.no_grad()
def magnitude_masks(module: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """Global magnitude masks: True = kept. Ties at the threshold are pruned, so the share is at least `sparsity`."""
    weights = prunable_weights(module)
    flat = torch.cat([w.detach().abs().flatten() for _, w in weights])
    k = math.ceil(sparsity * flat.numel() - 1e-9)
    if k < 1:
        return {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights}
    threshold = flat.kthvalue(k).values
    return {n: w.detach().abs() > threshold for n, w in weights}


@torch.no_grad()
def apply_masks(module: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    for name, w in prunable_weights(module):
        w.mul_(masks[name])
    for m in module.modules():  # recurrent layers keep a flat copy of their weights
        if isinstance(m, (nn.LSTM, nn.GRU, nn.RNN)):
            m.flatten_parameters()


def hold_masks(module: nn.Module, masks: dict[str, torch.Tensor]) -> list[Any]:
    """Gradient hooks that keep pruned weights at zero while fine-tuning; remove them afterwards."""
    return [w.register_hook(lambda g, m=masks[name]: g * m) for name, w in prunable_weights(module)]


def sparsity(module: nn.Module) -> dict[str, float]:
    """Share of zeros in the prunable weights, and in all parameters."""
    weights = prunable_weights(module)
    zeros = sum(int((w == 0).sum()) for _, w in weights)
    total = sum(w.numel() for _, w in weights)
    all_zeros = sum(int((p == 0).sum()) for p in module.parameters())
    all_total = sum(p.numel() for p in module.parameters())
    return {"weights": round(zeros / max(total, 1), 4), "all_parameters": round(all_zeros / max(all_total, 1), 4)}
