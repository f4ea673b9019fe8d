"""Specs: cnn, simple_cnn, lenet5, resnet18, vit."""

from __future__ import annotations

from dataclasses import dataclass

from dlopt.models.spec import BATCH, ArchSpec, TensorSpec
from dlopt.models.zoo.table import CLASSIFIER, register

IMAGE = TensorSpec("image", (BATCH, "in_channels", "input_size", "input_size"))
LOGITS = TensorSpec("logits", (BATCH, "num_classes"))
IMAGE_CLASSIFIER = {**CLASSIFIER, "inputs": (IMAGE,), "outputs": (LOGITS,), "dataset": "digits"}


@dataclass(frozen=True)
class CNNConfig:
    in_channels: int = 1
    input_size: int = 28  # three 2x poolings: 28 -> 3, so the head is Linear(128*3*3, 512)
    num_classes: int = 10
    widths: tuple[int, ...] = (32, 64, 128)
    hidden: int = 512
    dropout: float = 0.5


@dataclass(frozen=True)
class SimpleCNNConfig:
    in_channels: int = 3
    input_size: int = 32  # CIFAR-10 shape
    num_classes: int = 10
    widths: tuple[int, ...] = (32, 64, 128)  # each used by a pair of conv blocks
    hidden: int = 512
    dropout: float = 0.5
    dropout2d: float = 0.25


@dataclass(frozen=True)
class LeNet5Config:
    in_channels: int = 1
    input_size: int = 32  # 32 -> conv 28 -> pool 14 -> conv 10 -> pool 5: 16*5*5 = 400 features
    num_classes: int = 10


@dataclass(frozen=True)
class ResNetConfig:
    in_channels: int = 3
    input_size: int = 224  # any size >= 32 works (global average pooling)
    num_classes: int = 1000
    layers: tuple[int, ...] = (2, 2, 2, 2)  # BasicBlocks per stage
    widths: tuple[int, ...] = (64, 128, 256, 512)


@dataclass(frozen=True)
class ViTConfig:
    in_channels: int = 3
    input_size: int = 224
    patch_size: int = 16
    num_classes: int = 1000
    embed_dim: int = 768  # ViT-B/16
    num_heads: int = 12
    num_layers: int = 12
    mlp_ratio: float = 4.0
    dropout: float = 0.1


register(ArchSpec(
    name="cnn",
    summary="3 x (Conv3x3 -> BN -> ReLU -> MaxPool2) 1->32->64->128, Linear 1152 -> 512 -> 10",
    builder="dlopt.models.nets.conv:CNN", config=CNNConfig,
    tiny={"widths": (4, 8, 8), "hidden": 16},
    **IMAGE_CLASSIFIER, source="002",
))

register(ArchSpec(
    name="simple_cnn",
    summary="conv block pairs (32,32) (64,64) (128,128) with MaxPool + Dropout2d, pooled MLP head",
    builder="dlopt.models.nets.conv:SimpleCNN", config=SimpleCNNConfig,
    tiny={"widths": (4, 8, 8), "hidden": 16, "input_size": 16},
    **IMAGE_CLASSIFIER, source="000, 001",
))

register(ArchSpec(
    name="lenet5",
    summary="LeNet-5: Conv5x5 1->6, Tanh, AvgPool, Conv5x5 6->16, Tanh, AvgPool, 400 -> 120 -> 84 -> 10",
    builder="dlopt.models.nets.conv:LeNet5", config=LeNet5Config,
    **IMAGE_CLASSIFIER, source="000",
))

register(ArchSpec(
    name="resnet18",
    summary="ResNet-18: BasicBlocks [2, 2, 2, 2], widths 64/128/256/512, 7x7 stem (torchvision topology)",
    builder="dlopt.models.nets.conv:ResNet18", config=ResNetConfig,
    tiny={"widths": (4, 8, 8, 16), "layers": (1, 1, 1, 1), "input_size": 32, "num_classes": 10},
    train_defaults={"input_size": 32, "num_classes": 10},  # digits upscaled to 32x32: 224 is too slow on a CPU
    **IMAGE_CLASSIFIER, source="000, 003",
))

register(ArchSpec(
    name="vit",
    summary="ViT-B/16: conv patch embedding, class token, 12 blocks of 768 dim / 12 heads, MLP ratio 4",
    builder="dlopt.models.nets.transformer:ViT", config=ViTConfig,
    tiny={"input_size": 32, "patch_size": 8, "embed_dim": 32, "num_heads": 2, "num_layers": 2, "num_classes": 10},
    # CPU training: 16x16 digits in 4x4 patches, and a ViT-Tiny-sized encoder (ViT-B/16 takes hours per epoch)
    train_defaults={"input_size": 16, "patch_size": 4, "num_classes": 10, "embed_dim": 128, "num_heads": 4,
                    "num_layers": 4},
    **IMAGE_CLASSIFIER, source="000",
))
