"""Depth pruning: whole residual blocks removed, each replaced by the identity it already carries.

A residual block computes `act(x + f(x))`; with f gone it passes x through, which is what the network learned to
fall back on (Veit et al. 2016: residual networks behave like ensembles of shallower ones). At small inputs a CPU
spends its time per layer, not per multiply, so removing blocks gains where narrower layers do not (mobilenet_v2
at 64x64 is overhead-bound).

A block is found from the model itself, not from its class name: a submodule called once with one tensor, returning
a tensor of the same shape, whose output reaches its input through additions alone (the skip path, found in the
autograd graph of one call). Only the outermost such modules count (a residual inside a residual block is part of
it). Blocks are ranked by how much removing each alone changes the model's outputs on the probe inputs (training
batches, or the spec's example inputs without data), and the cheapest ones go. Fine-tuning follows in the stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from dlopt.core.errors import UnsupportedError
from dlopt.models.structure import to_identity

CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)  # exactly these types group blocks, they are not blocks
MAX_PATH = 8  # autograd nodes followed from a block's output to its input (an activation, then the additions)
ADD = "AddBackward"
PASS_THROUGH = {ADD, "ReluBackward", "HardtanhBackward", "GeluBackward", "SiluBackward", "HardswishBackward",
                "EluBackward", "ClampBackward", "MishBackward", "CloneBackward"}  # autograd nodes (less their version
# digit) the skip path may cross; any other op (AddmmBackward of a Linear, a convolution) belongs to the branch
NO_BLOCK = ("no residual block to drop: depth pruning removes blocks whose output is their input plus a branch "
            "(ResNet, MobileNetV2, EfficientNet, pre-norm transformer blocks), and this model has none (a block "
            "that normalizes after the addition is not one: without it the next block sees other statistics)")


def _calls(model: nn.Module, module: nn.Module, inputs: tuple[Any, ...]) -> dict[str, list[tuple[Any, Any]]]:
    """(args, output) of every call of each submodule of `module` during model(*inputs)."""
    seen: dict[str, list[tuple[Any, Any]]] = {}
    handles = []
    for name, m in module.named_modules():
        if name:
            handles.append(m.register_forward_hook(
                lambda _m, args, out, name=name: seen.setdefault(name, []).append((args, out))))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return seen


def _skip_path(out: torch.Tensor, x: torch.Tensor) -> bool:
    """Whether `out` reaches the leaf `x` through activations and additions only, with at least one addition:
    out = act(x + branch), the residual's skip path."""
    stack, steps = [(out.grad_fn, False)], 0
    while stack and steps < MAX_PATH * 4:  # each addition has two inputs to follow
        node, added = stack.pop()
        steps += 1
        if node is None:
            continue
        if getattr(node, "variable", None) is x:
            if added:
                return True
            continue
        kind = type(node).__name__.rstrip("0123456789")
        if kind in PASS_THROUGH:
            stack.extend((n, added or kind == ADD) for n, _ in node.next_functions if n is not None)
    return False


def _residual(block: nn.Module, arg: torch.Tensor) -> bool:
    x = arg.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        try:
            out = block(x)
        except (RuntimeError, TypeError):
            return False
    return isinstance(out, torch.Tensor) and out.shape == x.shape and _skip_path(out, x)


def residual_blocks(model: nn.Module, module: nn.Module, example: tuple[Any, ...]) -> list[str]:
    """Names (in `module`) of its outermost residual blocks, in model order."""
    if not any(True for _ in module.parameters()):
        return []
    was = model.training
    model.eval()
    try:
        calls = _calls(model, module, example)
        found: list[str] = []
        for name, m in module.named_modules():
            if not name or type(m) in CONTAINERS or any(name.startswith(f + ".") for f in found):
                continue
            seen = calls.get(name, [])
            if len(seen) != 1 or not any(True for _ in m.parameters()):
                continue
            args, out = seen[0]
            if len(args) == 1 and isinstance(args[0], torch.Tensor) and args[0].is_floating_point() \
                    and isinstance(out, torch.Tensor) and out.shape == args[0].shape and _residual(m, args[0]):
                found.append(name)
        return found
    finally:
        model.train(was)


def _outputs(model: nn.Module, probe: Sequence[tuple[Any, ...]]) -> list[torch.Tensor]:
    from dlopt.models.outputs import flatten

    with torch.no_grad():
        return [t.float() for inputs in probe for t in flatten(model(*inputs)) if isinstance(t, torch.Tensor)]


def _change(model: nn.Module, block: nn.Module, probe: Sequence[tuple[Any, ...]], ref: list[torch.Tensor]) -> float:
    """Relative change of the model's outputs with `block` passing its input through."""
    handle = block.register_forward_hook(lambda _m, args, _out: args[0])
    try:
        got = _outputs(model, probe)
    finally:
        handle.remove()
    num = sum(float((g - r).pow(2).sum()) for g, r in zip(got, ref, strict=True))
    den = sum(float(r.pow(2).sum()) for r in ref)
    return (num / max(den, 1e-30)) ** 0.5


def rank_blocks(model: nn.Module, module: nn.Module, blocks: Sequence[str],
                probe: Sequence[tuple[Any, ...]]) -> list[tuple[str, float]]:
    """(block, relative output change when it alone is removed), cheapest first (ties in model order)."""
    model.eval()
    ref = _outputs(model, probe)
    costs = [(name, _change(model, module.get_submodule(name), probe, ref)) for name in blocks]
    return sorted(costs, key=lambda c: c[1])


def blocks_to_drop(count: int, found: int) -> int:
    if count > found:
        raise UnsupportedError(f"--drop-blocks {count}: the model has {found} residual block(s) that can go "
                               f"(use at most {found})")
    return count


def drop_blocks(model: nn.Module, module: nn.Module, count: int, example: tuple[Any, ...],
                probe: Sequence[tuple[Any, ...]]) -> dict[str, Any]:
    """Remove the `count` cheapest residual blocks of `module` (inside `model`) in place; what went and why."""
    blocks = residual_blocks(model, module, example)
    if not blocks:
        raise UnsupportedError(NO_BLOCK)
    ranked = rank_blocks(model, module, blocks, probe or [example])
    gone = [name for name, _ in ranked[:blocks_to_drop(count, len(blocks))]]
    for name in gone:
        to_identity(module, name)
    return {"blocks": {"found": len(blocks), "dropped": [n for n in blocks if n in gone],
                       "ranking": [{"block": n, "output_change": round(c, 6)} for n, c in ranked],
                       "why": "the blocks whose removal alone changed the outputs least on "
                              + ("training batches" if probe else "the example input")}}
