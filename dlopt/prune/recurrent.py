"""Hidden-unit pruning for nn.RNN, nn.LSTM and nn.GRU (any number of layers, one or two directions).

Torch-Pruning 1.6 ships an LSTM pruner for one layer only (and none for RNN or GRU); this one is registered
as a customized pruner, so the dependency graph still resizes whatever reads the recurrent output. A hidden
unit is removed from every layer and both directions at once (nn.RNNBase has a single hidden_size); the
output features are [forward H | backward H], declared as channel groups so both halves lose the same units.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch_pruning.pruner.function import BasePruningFunc

GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _select(param: nn.Parameter, keep: torch.Tensor, dim: int) -> nn.Parameter:
    return nn.Parameter(torch.index_select(param.detach(), dim, keep.to(param.device)).contiguous(),
                        requires_grad=param.requires_grad)


def _suffixes(layer: nn.RNNBase) -> list[str]:
    return ["", "_reverse"] if layer.bidirectional else [""]


class RecurrentPruner(BasePruningFunc):
    TARGET_MODULES = (nn.RNN, nn.LSTM, nn.GRU)

    def prune_out_channels(self, layer: nn.RNNBase, idxs: Sequence[int]) -> nn.RNNBase:
        hidden, dirs = layer.hidden_size, len(_suffixes(layer))
        gone = {int(i) % hidden for i in idxs}
        keep = torch.tensor([u for u in range(hidden) if u not in gone], dtype=torch.long)
        rows = torch.cat([keep + g * hidden for g in range(GATES[layer.mode])])  # gate blocks stacked on dim 0
        cols = torch.cat([keep + d * hidden for d in range(dirs)])  # a deeper layer reads [fwd H | bwd H]
        for k in range(layer.num_layers):
            for sfx in _suffixes(layer):
                names = {n: f"{n}_l{k}{sfx}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
                w_ih = _select(getattr(layer, names["weight_ih"]), rows, 0)
                setattr(layer, names["weight_ih"], _select(w_ih, cols, 1) if k > 0 else w_ih)
                w_hh = _select(getattr(layer, names["weight_hh"]), rows, 0)
                setattr(layer, names["weight_hh"], _select(w_hh, keep, 1))
                if layer.bias:
                    for b in ("bias_ih", "bias_hh"):
                        setattr(layer, names[b], _select(getattr(layer, names[b]), rows, 0))
        layer.hidden_size = len(keep)
        layer._init_flat_weights()
        return layer

    def prune_in_channels(self, layer: nn.RNNBase, idxs: Sequence[int]) -> nn.RNNBase:
        keep = torch.tensor(sorted(set(range(layer.input_size)) - {int(i) for i in idxs}), dtype=torch.long)
        for sfx in _suffixes(layer):
            setattr(layer, f"weight_ih_l0{sfx}", _select(getattr(layer, f"weight_ih_l0{sfx}"), keep, 1))
        layer.input_size = len(keep)
        layer._init_flat_weights()
        return layer

    def get_out_channels(self, layer: nn.RNNBase) -> int:
        return layer.hidden_size * len(_suffixes(layer))

    def get_in_channels(self, layer: nn.RNNBase) -> int:
        return layer.input_size

    def get_out_channel_groups(self, layer: nn.RNNBase) -> int:
        return len(_suffixes(layer))


def customized_pruners() -> dict[type, BasePruningFunc]:
    pruner = RecurrentPruner()
    return {nn.RNN: pruner, nn.LSTM: pruner, nn.GRU: pruner}
