"""The groups of coupled layers the width table chooses for: one Torch-Pruning dependency group each (the layers
whose outputs share the channels, and the layers reading them), its candidate widths inside the window, and the
Conv / Linear calls each candidate makes, sized with every other group at the rule's widths."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import nn

from dlopt.prune.op_calls import Op, op_for
from dlopt.prune.widths import ALIGN, MAX_SHIFT, MIN_ROUNDED, SMALL_ALIGN, WIDE_FROM, WidthChoice

MAX_CANDIDATES = 4  # per group: the multiples of ALIGN nearest the exact width, inside the window
BLOCK_SHIFT = 0.20  # ... plus the multiples of SMALL_ALIGN either side of the exact width, up to this far


def _window(choice: WidthChoice, ratio: float, shift: float, align: int) -> list[int]:
    """Multiples of `align` whose share removed is within `shift` of the ratio, pruning something."""
    lo = math.ceil(choice.before * (1 - ratio - shift) - 1e-9)
    hi = min(math.floor(choice.before * (1 - ratio + shift) + 1e-9), choice.before - 1)
    return [c for c in range(align * math.ceil(lo / align), hi + 1, align) if c >= MIN_ROUNDED]


def candidates(choice: WidthChoice, ratio: float) -> list[int]:
    """Multiples of ALIGN inside the window (share removed within MAX_SHIFT of the ratio, something pruned), the
    MAX_CANDIDATES nearest the exact width, the rule's own width always among them; and, where the exact width is
    under WIDE_FROM (64) and the window holds no multiple of SMALL_ALIGN, the nearest multiple of SMALL_ALIGN below
    and above it up to BLOCK_SHIFT from the ratio. Such a window can hold one multiple of 8 that runs no faster
    than the unpruned width: the cnn's 32-channel first layer has 24 alone in its window (20-25), and on AVX-512
    kernels, which block channels by 16, 24 channels cost what 32 do (eager and ONNX Runtime both), 16 about
    half (benchmarks/prune_eager_b8.py).
    A width outside the window is kept only when the table measures it faster and the knapsack holds the whole
    model's share of channels within OVERALL_SHIFT of the ratio (dlopt.prune.width_table). None for a narrow
    layer (it keeps the exact ratio: a multiple of 8 would move its share by tens of points, e.g. 8 or 16 of 64
    at 0.8)."""
    if choice.exact < MIN_ROUNDED:
        return []
    window = _window(choice, ratio, MAX_SHIFT, ALIGN)
    near = sorted(window, key=lambda c: (abs(c - choice.exact), c))[:MAX_CANDIDATES]
    blocked = choice.exact < WIDE_FROM and not any(c % SMALL_ALIGN == 0 for c in window)
    wide = _window(choice, ratio, BLOCK_SHIFT, SMALL_ALIGN) if blocked else []
    below = [c for c in wide if c <= choice.exact][-1:]
    above = [c for c in wide if c > choice.exact][:1]
    return sorted(set(near) | set(below) | set(above) | ({choice.kept} if choice.kept in window else set()))


@dataclass(frozen=True)
class Group:
    """Planned layers whose output channels are one dependency group: they keep the same width."""

    names: tuple[str, ...]
    before: int
    cands: tuple[int, ...]
    ops: dict[int, tuple[Op, ...]]  # kept width -> the calls it makes (producers and readers)


def _input_shapes(module: nn.Module, example: tuple[Any, ...]) -> dict[nn.Module, tuple[int, ...]]:
    import torch

    from dlopt.prune.layers import ROOT_TYPES

    shapes: dict[nn.Module, tuple[int, ...]] = {}

    def hook(mod: nn.Module, args: tuple[Any, ...], _out: Any) -> None:
        # a nested tensor (TransformerEncoder's fast path with a padding mask) has no fixed shape: the layer keeps
        # the rule's width (op_for gets None)
        if args and isinstance(args[0], torch.Tensor) and not args[0].is_nested:
            shapes.setdefault(mod, tuple(args[0].shape))

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, ROOT_TYPES)]
    try:
        with torch.no_grad():
            module.eval()(*example)
    finally:
        for h in handles:
            h.remove()
    return shapes


Change = dict[nn.Module, tuple[int, int]]  # layer -> (its outputs are the group's: 0/1, its inputs per channel)


def _dependency_groups(module: nn.Module, example: tuple[Any, ...], plan: dict[str, WidthChoice]
                       ) -> list[tuple[str, tuple[str, ...], Change]]:
    """(first planned layer, producers, what the group changes) for each dependency group of the plan."""
    import torch_pruning as tp

    from dlopt.prune.layers import ROOT_TYPES
    from dlopt.prune.recurrent import customized_pruners

    graph = tp.DependencyGraph().build_dependency(module, example_inputs=list(example),
                                                   customized_pruners=customized_pruners())
    mods = dict(module.named_modules())
    names = {m: n for n, m in mods.items()}
    seen: set[str] = set()
    out = []
    for name, choice in plan.items():
        if name in seen:
            continue
        layer = mods[name]
        group = graph.get_pruning_group(layer, graph.get_pruner_of_module(layer).prune_out_channels,
                                        idxs=list(range(choice.before)))
        change: dict[nn.Module, list[int]] = {}
        for dep, idxs in group:
            if isinstance(dep.target.module, ROOT_TYPES):
                entry = change.setdefault(dep.target.module, [0, 0])
                if graph.is_out_channel_pruning_fn(dep.handler):
                    entry[0] = 1
                else:
                    entry[1] = len(idxs) // choice.before
        producers = tuple(names[m] for m, (o, _) in change.items() if o)
        seen.update(producers)
        out.append((name, producers, {m: (o, k) for m, (o, k) in change.items()}))
    return out


def groups_of(module: nn.Module, example: tuple[Any, ...], plan: dict[str, WidthChoice], ratio: float,
              batch: int) -> list[Group]:
    """The groups worth timing (two or more candidates, every producer planned, every call timeable), each
    candidate's calls sized with the other groups at the rule's widths (a layer's inputs are pruned too)."""
    if not any(len(candidates(c, ratio)) > 1 for c in plan.values()):
        return []
    shapes = _input_shapes(module, example)
    deps = _dependency_groups(module, example, plan)
    out_cut: dict[nn.Module, int] = {}
    in_cut: dict[nn.Module, int] = {}
    for name, _, change in deps:
        cut = plan[name].before - plan[name].kept
        for m, (o, k) in change.items():
            out_cut[m] = out_cut.get(m, 0) + o * cut
            in_cut[m] = in_cut.get(m, 0) + k * cut
    out: list[Group] = []
    for name, producers, change in deps:
        choice, cands = plan[name], candidates(plan[name], ratio)
        if len(cands) < 2 or any(p not in plan or plan[p].before != choice.before for p in producers):
            continue  # nothing to choose, or coupled to a layer the plan does not size (kept whole, heads)
        base = choice.before - choice.kept
        ops = {c: tuple(op_for(m, shapes.get(m), batch, out_cut[m] + o * (choice.before - c - base),
                               in_cut[m] + k * (choice.before - c - base)) for m, (o, k) in change.items())
               for c in cands}
        if all(op is not None for calls in ops.values() for op in calls):
            out.append(Group(producers, choice.before, tuple(cands), ops))  # type: ignore[arg-type]
    return out
