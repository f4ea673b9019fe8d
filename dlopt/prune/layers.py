"""Which layers of a model may lose channels, and the attention modules whose heads are pruned whole.

Generic rules (no per-architecture branches):
  - an output layer (its channels are a model output, directly or through an elementwise op such as Tanh,
    or nothing else reads them) keeps its size;
  - a layer whose channels are coupled to a LayerNorm is pruned through it (Torch-Pruning resizes the norm,
    embeddings and position tables of a Transformer's model width) -- unless a trial prune of a copy shows
    the model cannot run that way (a fixed sinusoidal table, say): then that width is kept, with the reason;
  - attention modules are found by their attributes (dlopt's MultiHeadAttention, Hugging Face's
    BertSelfAttention) and lose whole heads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

ROOT_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.RNN, nn.LSTM, nn.GRU)
NORMS = (nn.LayerNorm,)  # the normalisation a whole residual stream (a Transformer's model width) shares


@dataclass(frozen=True)
class HeadHandler:
    """How to read and fix the head count of one kind of attention module (duck typed by attributes)."""

    attrs: tuple[str, ...]  # attributes that identify the module kind
    qkv: tuple[str, ...]  # its query, key, value Linear layers
    heads_attr: str
    fix: Callable[[nn.Module, int], None]  # set the module's head bookkeeping after pruning


def _fix_dlopt(module: nn.Module, heads: int) -> None:
    module.num_heads = heads  # head_dim is unchanged: whole heads are removed


def _fix_hf(module: nn.Module, heads: int) -> None:
    module.num_attention_heads = heads
    module.all_head_size = module.query.out_features


HEAD_HANDLERS = (
    HeadHandler(("w_q", "w_k", "w_v", "num_heads", "head_dim"), ("w_q", "w_k", "w_v"), "num_heads", _fix_dlopt),
    HeadHandler(("query", "key", "value", "num_attention_heads", "attention_head_size"), ("query", "key", "value"),
                "num_attention_heads", _fix_hf),
)


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module, HeadHandler]]:
    out = []
    for name, module in model.named_modules():
        handler = next((h for h in HEAD_HANDLERS if all(hasattr(module, a) for a in h.attrs)), None)
        if handler is not None:
            out.append((name, module, handler))
    return out


def head_counts(model: nn.Module) -> dict[nn.Module, int]:
    """Torch-Pruning's num_heads argument: each q/k/v Linear -> its module's head count."""
    return {getattr(m, q): int(getattr(m, h.heads_attr)) for _, m, h in attention_modules(model) for q in h.qkv}


def _model_outputs(model: nn.Module, example: tuple[Any, ...]) -> tuple[list[torch.Tensor], dict[nn.Module, Any]]:
    seen: dict[nn.Module, Any] = {}
    hooks = [m.register_forward_hook(lambda mod, _i, out: seen.__setitem__(mod, out))
             for m in model.modules() if isinstance(m, ROOT_TYPES)]
    try:
        with torch.no_grad():
            out = model(*example)
    finally:
        for h in hooks:
            h.remove()
    from dlopt.models.outputs import flatten

    return list(flatten(out)), seen  # every tensor of a tuple, dict or nested output


def kept_layers(model: nn.Module, graph: Any, example: tuple[Any, ...],
                norm_reason: str | None = None) -> dict[nn.Module, str]:
    """Root layers whose output channels must not be pruned, with the reason (see the module docstring).
    With `norm_reason`, layers whose channels are tied to a LayerNorm are kept too, for that reason."""
    from torch_pruning import ops

    outputs, seen = _model_outputs(model, example)
    qkv = set(head_counts(model))
    kept: dict[nn.Module, str] = {}
    for module in model.modules():
        if not isinstance(module, ROOT_TYPES) or module in qkv:
            continue
        if module not in graph.module2node:
            kept[module] = "not in the traced graph"
            continue
        if width(module) <= 1:
            kept[module] = "a single output channel"
            continue
        if any(o is seen.get(module) for o in outputs):
            kept[module] = "output layer"
            continue
        group = graph.get_pruning_group(module, graph.get_pruner_of_module(module).prune_out_channels, idxs=[0])
        targets = [item.dep.target for item in group]
        if len(group) == 1 or any(t.type == ops.OPTYPE.OUTPUT for t in targets):
            kept[module] = "output layer"
        elif norm_reason and any(isinstance(t.module, NORMS) for t in targets):
            kept[module] = norm_reason
    return kept


def width(m: nn.Module) -> int:
    if isinstance(m, nn.Linear):
        return m.out_features
    return int(getattr(m, "out_channels", getattr(m, "hidden_size", 0)))


def layer_widths(model: nn.Module) -> dict[str, dict[str, int]]:
    """Per-layer widths for reports: out channels / features / hidden size, and heads for attention."""
    out: dict[str, dict[str, int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            out[name] = {"in": m.in_features, "out": m.out_features}
        elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            out[name] = {"in": m.in_channels, "out": m.out_channels}
        elif isinstance(m, (nn.LSTM, nn.GRU, nn.RNN)):
            out[name] = {"in": m.input_size, "hidden": m.hidden_size}
    for name, m, h in attention_modules(model):
        out[name] = {"heads": int(getattr(m, h.heads_attr))}
    return out
