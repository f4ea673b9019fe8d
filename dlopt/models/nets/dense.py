"""Fully connected models: perceptron, MLP, DQN's Q-network."""

from __future__ import annotations

import torch
from torch import nn


class Perceptron(nn.Module):
    """One linear unit with a step activation: out = 1 if w.x + b >= 0 else 0."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.linear = nn.Linear(cfg.in_features, 1)
        # The rule's classic start; a random bias can put every random input on one side, and an untrained
        # perceptron that outputs 0 for every verification input would leave nothing to verify.
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F) -> (B, 1) of 0./1.
        return (self.linear(x) >= 0).to(x.dtype)


class MLP(nn.Module):
    """Linear -> ReLU -> BatchNorm1d -> Dropout per hidden layer, then a Linear head."""

    def __init__(self, cfg) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = cfg.in_features
        for width in cfg.hidden_sizes:
            layers += [nn.Linear(prev, width), nn.ReLU(), nn.BatchNorm1d(width), nn.Dropout(cfg.dropout)]
            prev = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(prev, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F) -> (B, classes)
        return self.head(self.features(x))


class QNetwork(nn.Module):
    """DQN's Q-network: state -> one Q-value per action."""

    def __init__(self, cfg) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = cfg.state_size
        for width in cfg.hidden_sizes:
            layers += [nn.Linear(prev, width), nn.ReLU()]
            prev = width
        layers.append(nn.Linear(prev, cfg.num_actions))
        self.net = nn.Sequential(*layers)

    def forward(self, state: torch.Tensor) -> torch.Tensor:  # (B, 4) -> (B, actions)
        return self.net(state)
