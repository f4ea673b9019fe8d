"""GAN, autoencoder and VAE on flattened 28x28 images."""

from __future__ import annotations

import torch
from torch import nn


def _mlp(sizes: list[int], act: nn.Module, final: nn.Module | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act)
    if final is not None:
        layers.append(final)
    return nn.Sequential(*layers)


class GAN(nn.Module):
    """Generator z -> image (Tanh) and discriminator image -> P(real) (Sigmoid).

    forward() is the generator: it is what gets deployed. Training uses both networks.
    """

    def __init__(self, cfg) -> None:
        super().__init__()
        slope = cfg.leaky_slope
        self.generator = _mlp([cfg.latent_size, *cfg.gen_hidden, cfg.image_size], nn.LeakyReLU(slope), nn.Tanh())
        self.discriminator = _mlp([cfg.image_size, *cfg.disc_hidden, 1], nn.LeakyReLU(slope), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, latent) -> (B, 784)
        return self.generator(z)


class Autoencoder(nn.Module):
    """784 -> 128 -> 64 -> 12 -> 3 with ReLU between; mirrored decoder ending in Tanh."""

    def __init__(self, cfg) -> None:
        super().__init__()
        sizes = [cfg.in_features, *cfg.hidden_sizes]
        self.encoder = _mlp(sizes, nn.ReLU(), None)
        self.decoder = _mlp(sizes[::-1], nn.ReLU(), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 784) -> (B, 784)
        return self.decoder(self.encoder(x))


class VAE(nn.Module):
    """Encoder (Linear, ReLU) x2 -> mu, log-variance; decoder Linear -> ReLU -> Linear -> Sigmoid.

    In training z is sampled (reparameterisation); in eval z = mu, so exports are deterministic.
    """

    def __init__(self, cfg) -> None:
        super().__init__()
        h = cfg.hidden_size
        self.encoder = nn.Sequential(nn.Linear(cfg.in_features, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        self.mu = nn.Linear(h, cfg.latent_size)
        self.logvar = nn.Linear(h, cfg.latent_size)
        self.decoder = nn.Sequential(nn.Linear(cfg.latent_size, h), nn.ReLU(), nn.Linear(h, cfg.in_features), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = self.encoder(x)
        mu, logvar = self.mu(hidden), self.logvar(hidden)  # (B, latent) each
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decoder(z), mu, logvar
