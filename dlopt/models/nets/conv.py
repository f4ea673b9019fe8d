"""Convolutional image classifiers: cnn, simple_cnn, lenet5, resnet18."""

from __future__ import annotations

import torch
from torch import nn


def _pooled(size: int, times: int) -> int:
    for _ in range(times):
        size //= 2
    if size < 1:
        raise ValueError(f"input too small: pooling {times} times leaves nothing")
    return size


class CNN(nn.Module):
    """3 blocks Conv3x3 -> BN -> ReLU -> MaxPool2, then Linear -> ReLU -> Dropout -> Linear."""

    def __init__(self, cfg) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        prev = cfg.in_channels
        for width in cfg.widths:
            blocks += [nn.Conv2d(prev, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)]
            prev = width
        self.features = nn.Sequential(*blocks)
        side = _pooled(cfg.input_size, len(cfg.widths))  # 28 -> 3 for the default
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(prev * side * side, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        return self.classifier(self.features(x))


class SimpleCNN(nn.Module):
    """Pairs of Conv3x3 -> BN -> ReLU, each pair followed by MaxPool2 + Dropout2d; pooled head."""

    def __init__(self, cfg) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        prev = cfg.in_channels
        for width in cfg.widths:
            for _ in range(2):
                blocks += [nn.Conv2d(prev, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
                prev = width
            blocks += [nn.MaxPool2d(2), nn.Dropout2d(cfg.dropout2d)]
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(prev, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNet5(nn.Module):
    """Conv5x5 1->6, Tanh, AvgPool2, Conv5x5 6->16, Tanh, AvgPool2, Linear 400->120->84->classes."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(cfg.in_channels, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        )
        side = (((cfg.input_size - 4) // 2) - 4) // 2  # 32 -> 5
        if side < 1:
            raise ValueError(f"lenet5 needs input_size >= 16, got {cfg.input_size}")
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * side * side, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(),
            nn.Linear(84, cfg.num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:  # 1x1 conv + BN shortcut when the shape changes
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    """torchvision's resnet18 topology: 7x7 stem + maxpool, BasicBlocks [2, 2, 2, 2], avgpool, fc."""

    def __init__(self, cfg) -> None:
        super().__init__()
        w0 = cfg.widths[0]
        self.conv1 = nn.Conv2d(cfg.in_channels, w0, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w0)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, prev = [], w0
        for i, (width, blocks) in enumerate(zip(cfg.widths, cfg.layers, strict=True)):
            stride = 1 if i == 0 else 2
            stage = [BasicBlock(prev, width, stride)] + [BasicBlock(width, width, 1) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            prev = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, cfg.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, classes)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))
