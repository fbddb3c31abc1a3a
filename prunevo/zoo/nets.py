"""Small networks for fitness tasks: a VGG-style net, ResNet-style nets with residual adds, LeNet-5.

They adapt to the input size (8x8 digits to 28x28 MNIST) and use non-inplace ReLUs so that statistics
hooks see each activation unmodified.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from prunevo.errors import ModelError


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class SmallVGG(nn.Module):
    """Two stages of two 3x3 conv-BN-ReLU layers, max-pooling between them, global average pooling."""

    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, ...] = (32, 64, 128, 128)):
        super().__init__()
        a, b, c, d = widths
        self.features = nn.Sequential(
            *_conv_bn(in_channels, a), *_conv_bn(a, b), nn.MaxPool2d(2),
            *_conv_bn(b, c), *_conv_bn(c, d), nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(d, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class BasicBlock(nn.Module):
    """ResNet basic block; a 1x1 projection shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """Stem + three stages of basic blocks (32, 64, 128 channels; 2, 1, 1 blocks by default); residual adds
    couple channels."""

    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, ...] = (32, 64, 128),
                 blocks: tuple[int, ...] = (2, 1, 1)):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(in_channels, widths[0]))
        layers: list[nn.Module] = []
        cin = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                layers.append(BasicBlock(cin, w, stride=2 if (i > 0 and j == 0) else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


class LeNet5(nn.Module):
    """LeNet-5 (6 and 16 5x5 filters, 120-84 hidden units); padded so that 8x8 inputs fit too."""

    def __init__(self, in_channels: int, num_classes: int, input_size: int = 28):
        super().__init__()
        pad2 = 0 if input_size >= 28 else 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=pad2), nn.ReLU(), nn.MaxPool2d(2),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_channels, input_size, input_size)).numel()
        self.classifier = nn.Sequential(
            nn.Linear(flat, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


SMALL_NETS: dict[str, Callable[..., nn.Module]] = {
    "vgg": lambda c, k, size: SmallVGG(c, k),
    "resnet": lambda c, k, size: SmallResNet(c, k),
    "lenet5": lambda c, k, size: LeNet5(c, k, size),
    # He et al.'s CIFAR ResNet-20 (3 stages x 3 basic blocks, 16/32/64 channels; projection shortcuts):
    # the classic small ResNet of pruning papers, with 7 removable blocks for layer pruning
    "resnet20": lambda c, k, size: SmallResNet(c, k, widths=(16, 32, 64), blocks=(3, 3, 3)),
    # the deeper CIFAR ResNets of the same family (9 basic blocks per stage for ResNet-56, the network of
    # Torch-Pruning's and most pruning papers' CIFAR tables)
    "resnet32": lambda c, k, size: SmallResNet(c, k, widths=(16, 32, 64), blocks=(5, 5, 5)),
    "resnet56": lambda c, k, size: SmallResNet(c, k, widths=(16, 32, 64), blocks=(9, 9, 9)),
}


def build_small_net(name: str, in_channels: int, num_classes: int, input_size: int) -> nn.Module:
    if name not in SMALL_NETS:
        raise ModelError(f"unknown network {name!r}; allowed: {', '.join(SMALL_NETS)}")
    return SMALL_NETS[name](in_channels, num_classes, input_size)
