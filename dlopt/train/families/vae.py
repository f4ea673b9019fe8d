"""VAE: minimise the negative ELBO (Bernoulli reconstruction + KL to N(0, I)); metric: ELBO per sample
in nats (higher is better). Leaves a grid of decoded prior samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dlopt.tasks.generative import VAETask, first, neg_elbo
from dlopt.train.config import HParams
from dlopt.train.family import Family, register_family
from dlopt.train.plots import sample_grid


@register_family
class VAE(VAETask, Family):
    defaults = HParams(epochs=40, batch_size=64, lr=1e-3, weight_decay=0.0, patience=8)

    def loss(self, model: torch.nn.Module, x: Any, y: Any) -> torch.Tensor:
        rec, kl = neg_elbo(model, first(x).flatten(1))
        return (rec + kl).mean()

    def artifacts(self, model: torch.nn.Module, out_dir: Path) -> list[Path]:
        gen = torch.Generator().manual_seed(self.seed)
        z = torch.randn(64, model.mu.out_features, generator=gen).to(self.rt.device)
        with torch.no_grad():
            images = model.eval().decoder(z).float().cpu()
        return [sample_grid(images, out_dir / "samples.png", "VAE samples from the prior", value_range=(0.0, 1.0))]
