"""`prune_model`: prune a copy of a model (its entry module) and say what changed.

Pure model-level: no run, no files. `run_prune` (stage.py) adds data, fine-tuning, saving and the report.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from dlopt.core.errors import UnsupportedError
from dlopt.models.spec import ArchSpec
from dlopt.prune.config import PruneConfig, PruneMethod
from dlopt.prune.layers import layer_widths

StepHook = Callable[[nn.Module, int], None]  # (whole model, step) after each iterative step: fine-tuning


def check_supported(spec: ArchSpec, cfg: PruneConfig) -> None:
    if not spec.supports(f"prune:{cfg.method}"):
        raise UnsupportedError(f"{spec.name} cannot be pruned ({cfg.method}): {spec.why_not(f'prune:{cfg.method}')}")


def measure(module: nn.Module, example: tuple[Any, ...]) -> dict[str, int]:
    """Parameters and multiply-accumulates of one forward call at the example input."""
    from dlopt.models.summary import count_flops

    was = module.training
    module.eval()
    try:
        macs = count_flops(module, example) // 2
    finally:
        module.train(was)
    return {"params": sum(p.numel() for p in module.parameters()), "macs": int(macs)}


def prune_model(model: nn.Module, spec: ArchSpec, cfg: PruneConfig, example: tuple[Any, ...],
                loss_fn: Callable[[nn.Module], torch.Tensor] | None = None,
                after_step: StepHook | None = None,
                probe: Sequence[tuple[Any, ...]] = ()) -> tuple[nn.Module, dict[str, Any]]:
    """Prune a deep copy of `model` (its spec's entry module); returns (pruned whole model, info).

    `example` is the entry module's example input (1 sample is enough); `loss_fn(whole model)` is the loss for
    Taylor importance; `after_step(whole model, k)` runs after each of the cfg.iterative_steps steps (once, after
    the blocks went, when only blocks are dropped); `probe`: whole-model inputs that rank the blocks
    `cfg.drop_blocks` removes (the example without them).
    """
    from dlopt.models.registry import entry_module

    check_supported(spec, cfg)
    t0 = time.perf_counter()
    pruned = copy.deepcopy(model).eval()
    module = entry_module(pruned, spec)
    before, widths_before = measure(module, example), layer_widths(module)
    hook = (lambda k: after_step(pruned, k)) if after_step else None
    depth: dict[str, Any] = {}
    if cfg.drop_blocks:
        from dlopt.prune.depth import drop_blocks

        depth = drop_blocks(pruned, module, cfg.drop_blocks, example, probe)
    if cfg.method == PruneMethod.STRUCTURED and not cfg.ratio:  # blocks only: fine-tune once, as after one step
        detail = {"kept_layers": {}, "width_plan": {}}
        for step in range(1, cfg.iterative_steps + 1) if hook else ():
            hook(step)
    elif cfg.method == PruneMethod.STRUCTURED:
        from dlopt.prune.limits import check_structured, upstream_limits
        from dlopt.prune.structured import prune_structured

        check_structured(module)  # a model kind Torch-Pruning cannot handle: exit 4 now, not after minutes / GBs
        loss = (lambda _m: loss_fn(pruned)) if loss_fn else None
        with upstream_limits():
            detail = prune_structured(module, example, cfg, loss, hook)
    else:
        detail = _unstructured(module, cfg, hook)
    after = measure(module.eval(), example)
    info = {"method": str(cfg.method), "ratio": cfg.ratio, "importance": str(cfg.importance),
            "global": cfg.global_pruning, "iterative_steps": cfg.iterative_steps,
            "params": {"before": before["params"], "after": after["params"],
                       "removed": round(1 - after["params"] / max(before["params"], 1), 4)},
            "macs": {"before": before["macs"], "after": after["macs"],
                     "removed": round(1 - after["macs"] / max(before["macs"], 1), 4)},
            "widths": {"before": widths_before, "after": layer_widths(module)},
            **detail, **depth, "seconds": round(time.perf_counter() - t0, 3)}
    return pruned.eval(), info


def _unstructured(module: nn.Module, cfg: PruneConfig, hook: Callable[[int], None] | None) -> dict[str, Any]:
    """Global magnitude pruning in K steps of rising sparsity; the masks hold during fine-tuning."""
    from dlopt.prune.unstructured import apply_masks, hold_masks, magnitude_masks, prunable_weights, sparsity

    if not prunable_weights(module):
        raise UnsupportedError("nothing to prune: the model has no Linear, Conv or recurrent weights")
    for step in range(1, cfg.iterative_steps + 1):
        masks = magnitude_masks(module, cfg.ratio * step / cfg.iterative_steps)
        apply_masks(module, masks)
        if hook:
            handles = hold_masks(module, masks)
            try:
                hook(step)
            finally:
                for h in handles:
                    h.remove()
            apply_masks(module, masks)
    return {"sparsity": sparsity(module),
            "note": "weights are zeroed, shapes unchanged: dense kernels run at the same speed"}
