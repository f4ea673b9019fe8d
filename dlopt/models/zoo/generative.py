"""Specs: gan, autoencoder, vae (flattened 28x28 digits)."""

from __future__ import annotations

from dataclasses import dataclass

from dlopt.models.spec import BATCH, ArchSpec, Task, TensorSpec
from dlopt.models.zoo.table import register


@dataclass(frozen=True)
class GANConfig:
    latent_size: int = 100  # z
    gen_hidden: tuple[int, ...] = (256,)  # 001's wider variant: (256, 512, 1024)
    disc_hidden: tuple[int, ...] = (128,)  # 001's wider variant: (512, 256)
    image_size: int = 784  # flattened 28x28
    leaky_slope: float = 0.01


@dataclass(frozen=True)
class AutoencoderConfig:
    in_features: int = 784
    hidden_sizes: tuple[int, ...] = (128, 64, 12, 3)  # the decoder mirrors these


@dataclass(frozen=True)
class VAEConfig:
    in_features: int = 784
    hidden_size: int = 400
    latent_size: int = 20


register(ArchSpec(
    name="gan", trainer="gan",
    summary="MLP generator z(100) -> 256 -> 784 Tanh and discriminator 784 -> 128 -> 1 Sigmoid",
    builder="dlopt.models.nets.generative:GAN",
    config=GANConfig,
    tiny={"latent_size": 8, "gen_hidden": (16,), "disc_hidden": (8,), "image_size": 64},
    inputs=(TensorSpec("z", (BATCH, "latent_size")),),
    outputs=(TensorSpec("image", (BATCH, "image_size")),),
    task=Task.GENERATION, dataset="digits", metric="generator_loss",
    entry="generator",  # deployment stages work on the generator; training uses both networks
    source="001, 004",
))

register(ArchSpec(
    name="autoencoder", trainer="autoencoder",
    summary="784 -> 128 -> 64 -> 12 -> 3 (ReLU) with a mirrored decoder ending in Tanh",
    builder="dlopt.models.nets.generative:Autoencoder",
    config=AutoencoderConfig,
    tiny={"in_features": 64, "hidden_sizes": (16, 4)},
    inputs=(TensorSpec("input", (BATCH, "in_features")),),
    outputs=(TensorSpec("reconstruction", (BATCH, "in_features")),),
    task=Task.RECONSTRUCTION, dataset="digits", metric="mse",
    source="004",
))

register(ArchSpec(
    name="vae", trainer="vae",
    summary="VAE: encoder (Linear, ReLU) x2 -> mu, log-variance; decoder Linear -> ReLU -> Linear -> Sigmoid",
    builder="dlopt.models.nets.generative:VAE",
    config=VAEConfig,
    tiny={"in_features": 64, "hidden_size": 16, "latent_size": 4},
    inputs=(TensorSpec("input", (BATCH, "in_features")),),
    outputs=(
        TensorSpec("reconstruction", (BATCH, "in_features")),
        TensorSpec("mu", (BATCH, "latent_size")),
        TensorSpec("logvar", (BATCH, "latent_size")),
    ),
    task=Task.RECONSTRUCTION, dataset="digits", metric="elbo",
    source="001",
))
