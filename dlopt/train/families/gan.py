"""GAN: alternating discriminator and generator steps (BCE, Adam betas (0.5, 0.999)).

There is no validation metric that says which epoch's generator is best, so the last epoch's is kept
(mode "last"); the logged metric is the generator loss against the discriminator on held-out images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dlopt.tasks.generative import GANTask, first
from dlopt.train.config import HParams
from dlopt.train.family import Family, make_optimizer, register_family
from dlopt.train.plots import sample_grid


@register_family
class GAN(GANTask, Family):
    defaults = HParams(epochs=60, batch_size=64, lr=2e-4, weight_decay=0.0, clip_norm=0.0, patience=0, warmup=0.0,
                       min_lr_ratio=1.0)

    def optimizers(self, model: torch.nn.Module) -> dict[str, torch.optim.Optimizer]:
        return {"discriminator": make_optimizer(model.discriminator.parameters(), self.hp, betas=(0.5, 0.999)),
                "generator": make_optimizer(model.generator.parameters(), self.hp, betas=(0.5, 0.999))}

    def train_step(self, model: torch.nn.Module, batch: Any, opts: dict, weight: float) -> dict[str, float]:
        real = first(batch[0]).flatten(1)
        n = len(real)
        with self.rt.autocast():
            fake = model.generator(self._z(n))
            d_real, d_fake = model.discriminator(real).float(), model.discriminator(fake.detach()).float()
            d_loss = F.binary_cross_entropy(d_real, torch.ones_like(d_real)) + \
                F.binary_cross_entropy(d_fake, torch.zeros_like(d_fake))
        self.rt.step(d_loss, model.discriminator.parameters(), opts["discriminator"], weight)
        with self.rt.autocast():
            d_gen = model.discriminator(fake).float()
            g_loss = F.binary_cross_entropy(d_gen, torch.ones_like(d_gen))  # non-saturating generator loss
        self.rt.step(g_loss, model.generator.parameters(), opts["generator"], weight)
        return {"loss": float(g_loss.detach()), "d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach())}

    def artifacts(self, model: torch.nn.Module, out_dir: Path) -> list[Path]:
        with torch.no_grad():
            images = model.eval().generator(self._z(64, torch.Generator().manual_seed(self.seed)))
        return [sample_grid(images, out_dir / "samples.png", "GAN generator samples", value_range=(-1.0, 1.0))]
