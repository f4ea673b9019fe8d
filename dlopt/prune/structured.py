"""Structured pruning with Torch-Pruning: channels, neurons and attention heads physically removed.

The dependency graph keeps residual adds, concatenations, norms and attention consistent; `layers` decides
which layers keep their size. Works in place: callers pass a copy.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dlopt.core.errors import ConfigError, UnsupportedError
from dlopt.prune.config import Importance, PruneConfig
from dlopt.prune.layers import NORMS, ROOT_TYPES, attention_modules, head_counts, kept_layers, width
from dlopt.prune.recurrent import customized_pruners
from dlopt.prune.width_table import plan_widths
from dlopt.prune.widths import WidthChoice, force_scopes, ratio_dict

LossFn = Callable[[nn.Module], torch.Tensor]  # a loss on one batch, for Taylor importance
MAX_GLOBAL_SHARE = 0.9  # with --global, no layer loses more than this share (unless --ratio itself is higher)
StepHook = Callable[[int], None]  # called after each iterative step (1-based), e.g. to fine-tune


def _importance(kind: Importance, module: nn.Module) -> Any:
    import torch_pruning as tp

    if kind == Importance.BN_SCALE:
        if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
            raise ConfigError("--importance bn-scale ranks channels by their BatchNorm scale, and this model has no "
                              "BatchNorm layer; use --importance l1, l2 or taylor")
        return tp.importance.BNScaleImportance()
    if kind == Importance.TAYLOR:
        return tp.importance.GroupTaylorImportance()
    return tp.importance.GroupMagnitudeImportance(p=1 if kind == Importance.L1 else 2)


def _check_unsupported(module: nn.Module) -> None:
    for name, m in module.named_modules():
        if isinstance(m, nn.LSTM) and m.proj_size:
            raise UnsupportedError(f"structured pruning cannot resize {name}: an LSTM with proj_size is not handled; "
                                   "use --method unstructured")


def prunable_layers(module: nn.Module, example: tuple[Any, ...], norm_reason: str | None = None
                    ) -> tuple[list[tuple[str, nn.Module]], dict[nn.Module, str]]:
    """(name, layer) whose output channels may go, and the kept layers with their reason (with `norm_reason`,
    the layers tied to a LayerNorm are kept, for that reason)."""
    import torch_pruning as tp

    _check_unsupported(module)
    traced: list[torch.Tensor] = []
    graph = tp.DependencyGraph().build_dependency(module, example_inputs=list(example),
                                                   customized_pruners=customized_pruners(),
                                                   output_transform=_output_leaves(traced))
    kept = kept_layers(module, graph, example, norm_reason)
    kept.update(_feeding_outputs(module, graph, traced, kept))
    prunable = [(n, m) for n, m in module.named_modules() if isinstance(m, ROOT_TYPES) and m not in kept]
    return prunable, kept


def _output_leaves(traced: list[torch.Tensor]) -> Callable[[Any], list[torch.Tensor]]:
    """Torch-Pruning's output_transform: the output's tensors (of a tuple, dict or nested output), kept in `traced`
    so their autograd nodes can be matched against the graph's."""
    def transform(out: Any) -> list[torch.Tensor]:
        from dlopt.models.outputs import flatten

        leaves = list(flatten(out))
        traced.extend(leaves)
        return leaves

    return transform


def _feeding_outputs(module: nn.Module, graph: Any, traced: list[torch.Tensor],
                     kept: dict[nn.Module, str]) -> dict[nn.Module, str]:
    """Layers whose channels reach a model output through any op (a pooled feature map returned beside the logits):
    pruning them would change that output's shape. Only outputs no layer returns directly need the search."""
    layer_fns = {n.grad_fn for m, n in graph.module2node.items() if isinstance(m, ROOT_TYPES)}
    fns = {t.grad_fn for t in traced if t.grad_fn is not None} - layer_fns
    if not fns:
        return {}
    qkv = set(head_counts(module))
    found = {}
    for m in module.modules():
        if not isinstance(m, ROOT_TYPES) or m in kept or m in qkv or m not in graph.module2node:
            continue
        group = graph.get_pruning_group(m, graph.get_pruner_of_module(m).prune_out_channels, idxs=[0])
        if any(item.dep.target.grad_fn in fns for item in group):
            found[m] = "output layer"
    return found


def _fix_heads(module: nn.Module, head_dims: dict[nn.Module, int]) -> None:
    for name, m, handler in attention_modules(module):
        q = getattr(m, handler.qkv[0])
        if q.out_features % head_dims[m]:
            raise UnsupportedError(f"pruning left {name} with {q.out_features} features, not whole heads of "
                                   f"{head_dims[m]}; this attention module cannot be pruned")
        handler.fix(m, q.out_features // head_dims[m])


def prune_structured(module: nn.Module, example: tuple[Any, ...], cfg: PruneConfig, loss_fn: LossFn | None = None,
                     after_step: StepHook | None = None) -> dict[str, Any]:
    """Prune `module` in place; returns what was kept and why. Raises when nothing can be pruned."""
    with warnings.catch_warnings():  # ViT's cls_token / pos_embedding: pruned along the model width they carry
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        return _prune(module, example, cfg, loss_fn, after_step, _norm_trial(module, example, cfg))


def _norm_trial(module: nn.Module, example: tuple[Any, ...], cfg: PruneConfig) -> str | None:
    """Prune a copy through its LayerNorms; None when that works (or there is none), else why the model width
    tied to them has to stay whole (e.g. a fixed sinusoidal position table the graph cannot resize)."""
    if not any(isinstance(m, NORMS) for m in module.modules()):
        return None
    try:
        _prune(copy.deepcopy(module), example, cfg, None, None, None)
    except (UnsupportedError, ConfigError) as exc:
        return f"model width (tied to a LayerNorm), kept whole: pruning through it failed ({str(exc)[:120]})"
    return None


def _prune(module: nn.Module, example: tuple[Any, ...], cfg: PruneConfig, loss_fn: LossFn | None,
           after_step: StepHook | None, norm_reason: str | None) -> dict[str, Any]:
    import torch_pruning as tp

    prunable, kept = prunable_layers(module, example, norm_reason)
    if not prunable:
        raise UnsupportedError("nothing to prune: every layer is an output layer or the model width")
    heads = head_counts(module)
    plan = plan_widths(prunable, heads, cfg, module, example)
    head_dims = {m: getattr(m, h.qkv[0]).out_features // int(getattr(m, h.heads_attr))
                 for _, m, h in attention_modules(module)}
    ratios = {} if cfg.global_pruning else ratio_dict(module, plan)  # local: each layer gets its planned width
    pruner = tp.pruner.MetaPruner(
        module, list(example), importance=_importance(cfg.importance, module), pruning_ratio=cfg.ratio,
        pruning_ratio_dict=ratios or None, global_pruning=cfg.global_pruning, iterative_steps=cfg.iterative_steps,
        ignored_layers=list(kept), num_heads=heads, prune_num_heads=bool(heads), prune_head_dims=False,
        head_pruning_ratio=cfg.ratio, root_module_types=list(ROOT_TYPES), customized_pruners=customized_pruners(),
        round_to=cfg.round_to if cfg.global_pruning and (cfg.round_to or 1) > 1 else None,
        max_pruning_ratio=max(cfg.ratio, MAX_GLOBAL_SHARE), output_transform=_output_leaves([]),
    )
    force_scopes(pruner, ratios, cfg.iterative_steps)
    for step in range(cfg.iterative_steps):
        if cfg.importance == Importance.TAYLOR:
            module.zero_grad()
            (loss_fn or _output_energy(example))(module).backward()
        pruner.step()
        module.zero_grad(set_to_none=True)
        _fix_heads(module, head_dims)
        if after_step:
            after_step(step + 1)
    _check_runs(module, example)
    names = {m: n for n, m in module.named_modules()}
    return {"kept_layers": {names[m]: why for m, why in kept.items() if m in names},
            "attention_modules": [n for n, _, _ in attention_modules(module)],
            "width_plan": {n: _why(c, cfg) for n, c in plan.items()}}


def _why(choice: WidthChoice, cfg: PruneConfig) -> dict[str, Any]:
    if cfg.global_pruning:
        how = "ranked across all layers (--global)" + (f", rounded down to a multiple of {cfg.round_to}"
                                                       if (cfg.round_to or 1) > 1 else "")
        return {"exact": round(choice.exact, 2), "why": how}
    return {"exact": round(choice.exact, 2), "planned": choice.kept, "why": choice.why, **(choice.detail or {})}


def _check_runs(module: nn.Module, example: tuple[Any, ...]) -> None:
    """A graph Torch-Pruning could not follow (state passed between layers, say) shows up as a shape error here."""
    empty = [n for n, m in module.named_modules() if isinstance(m, ROOT_TYPES) and width(m) < 1]
    if empty:  # global ranking can take a whole layer even when the per-layer check passed
        raise ConfigError(f"pruning removed every channel of {', '.join(empty[:3])}; use a lower --ratio")
    try:
        with torch.no_grad():
            module.eval()(*example)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedError(f"structured pruning left the model unable to run ({first[:160]}): its layers are "
                               "coupled in a way the dependency graph does not see; use --method unstructured"
                               ) from None


def _output_energy(example: tuple[Any, ...]) -> LossFn:
    """Without training data, Taylor importance ranks by the gradient of the outputs' mean square."""
    def loss(module: nn.Module) -> torch.Tensor:
        from dlopt.models.outputs import energy

        return energy(module(*example))  # every output tensor, of a tuple, dict or nested output too

    return loss
