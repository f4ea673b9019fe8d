"""Generative tasks on images: autoencoder (reconstruction MSE on [-1, 1]), VAE (ELBO on [0, 1]), GAN."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from dlopt.tasks.base import Task, register_task
from dlopt.tasks.runtime import eval_mode


def first(x: Any) -> torch.Tensor:
    return x[0] if isinstance(x, (tuple, list)) else x


def neg_elbo(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (reconstruction, KL) in nats: (B,), (B,)."""
    recon, mu, logvar = model(x)
    rec = F.binary_cross_entropy(recon.float().clamp(1e-6, 1 - 1e-6), x, reduction="none").sum(1)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).float().sum(1)
    return rec, kl


@register_task
class AutoencoderTask(Task):
    name = "autoencoder"
    mode = "min"
    value_range = (-1.0, 1.0)  # the decoder ends in Tanh

    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, float]:
        def fn(m: torch.nn.Module, x: Any, y: Any) -> dict[str, tuple]:
            x = first(x).flatten(1)
            err = F.mse_loss(m(x).float(), x, reduction="none").mean(1).sum()
            return {"loss": (err, len(x)), "mse": (err, len(x))}

        return self.mean_over(model, split, fn)


@register_task
class VAETask(Task):
    """Metric: ELBO per sample in nats (higher is better)."""

    name = "vae"
    mode = "max"
    value_range = (0.0, 1.0)  # Bernoulli reconstruction

    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, float]:
        def fn(m: torch.nn.Module, x: Any, y: Any) -> dict[str, tuple]:
            rec, kl = neg_elbo(m, first(x).flatten(1))
            n = len(rec)
            return {"loss": ((rec + kl).sum(), n), "elbo": (-(rec + kl).sum(), n),
                    "reconstruction": (rec.sum(), n), "kl": (kl.sum(), n)}

        return self.mean_over(model, split, fn)


@register_task
class GANTask(Task):
    """No metric says which generator is best (mode "last"); the logged one is the generator loss against the
    discriminator on held-out images."""

    name = "gan"
    mode = "last"
    value_range = (-1.0, 1.0)

    def _z(self, n: int, gen: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.model_cfg.latent_size, generator=gen).to(self.rt.device)

    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, float]:
        gen = torch.Generator().manual_seed(self.seed + 1)
        sums = {"generator_loss": 0.0, "discriminator_loss": 0.0, "d_real": 0.0, "d_fake": 0.0}
        count = 0
        with eval_mode(model):
            for x, _ in self.eval_batches(split):
                real = first(x).flatten(1)
                d_real = model.discriminator(real).float()
                d_fake = model.discriminator(model.generator(self._z(len(real), gen))).float()
                bce = F.binary_cross_entropy
                sums["generator_loss"] += float(bce(d_fake, torch.ones_like(d_fake), reduction="sum"))
                sums["discriminator_loss"] += float(bce(d_real, torch.ones_like(d_real), reduction="sum")
                                                    + bce(d_fake, torch.zeros_like(d_fake), reduction="sum"))
                sums["d_real"] += float(d_real.sum())
                sums["d_fake"] += float(d_fake.sum())
                count += len(real)
        out = {k: v / max(count, 1) for k, v in sums.items()}
        out["loss"] = out["generator_loss"]
        return out
