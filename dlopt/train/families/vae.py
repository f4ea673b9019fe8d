"""VAE: minimise the negative ELBO (Bernoulli reconstruction + KL to N(0, I)); metric: ELBO per sample
in nats (higher is better). Leaves a grid of decoded prior samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dlopt.train.config import HParams
from dlopt.train.families.autoencoder import first
from dlopt.train.family import Family, register_family
from dlopt.train.plots import sample_grid


def neg_elbo(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (reconstruction, KL) in nats: (B,), (B,)."""
    recon, mu, logvar = model(x)
    rec = F.binary_cross_entropy(recon.float().clamp(1e-6, 1 - 1e-6), x, reduction="none").sum(1)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).float().sum(1)
    return rec, kl


@register_family
class VAE(Family):
    name = "vae"
    mode = "max"
    value_range = (0.0, 1.0)
    defaults = HParams(epochs=40, batch_size=64, lr=1e-3, weight_decay=0.0, patience=8)

    def loss(self, model: torch.nn.Module, x: Any, y: Any) -> torch.Tensor:
        rec, kl = neg_elbo(model, first(x).flatten(1))
        return (rec + kl).mean()

    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, float]:
        def fn(m: torch.nn.Module, x: Any, y: Any) -> dict[str, tuple]:
            rec, kl = neg_elbo(m, first(x).flatten(1))
            n = len(rec)
            return {"loss": ((rec + kl).sum(), n), "elbo": (-(rec + kl).sum(), n),
                    "reconstruction": (rec.sum(), n), "kl": (kl.sum(), n)}

        return self.mean_over(model, split, fn)

    def artifacts(self, model: torch.nn.Module, out_dir: Path) -> list[Path]:
        gen = torch.Generator().manual_seed(self.seed)
        z = torch.randn(64, model.mu.out_features, generator=gen).to(self.rt.device)
        with torch.no_grad():
            images = model.eval().decoder(z).float().cpu()
        return [sample_grid(images, out_dir / "samples.png", "VAE samples from the prior", value_range=(0.0, 1.0))]
