"""AlexNet with batch normalisation (the TensorPack DoReFa layout), named as Distiller's ``alexnet_bn``.

Grouped convolutions (groups=2) in conv1/3/4 follow the original two-GPU split.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _bn2d(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-4, momentum=0.9)


def _bn1d(c: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(c, eps=1e-4, momentum=0.9)


class AlexNetBN(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        relu = nn.ReLU
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=12, stride=4),  # 224 -> 54
            relu(inplace=True),
            nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2, bias=False),
            _bn2d(256),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),  # 54 -> 27
            relu(inplace=True),
            nn.Conv2d(256, 384, kernel_size=3, padding=1, bias=False),
            _bn2d(384),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),  # 27 -> 14
            relu(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2, bias=False),
            _bn2d(384),
            relu(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2, bias=False),
            _bn2d(256),
            nn.MaxPool2d(kernel_size=3, stride=2),  # 14 -> 6
            relu(inplace=True),
        )
        self.classifier = nn.Sequential(
            nn.Linear(256 * 6 * 6, 4096, bias=False),
            _bn1d(4096),
            relu(inplace=True),
            nn.Linear(4096, 4096, bias=False),
            _bn1d(4096),
            relu(inplace=True),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                fan_in = (
                    m.in_features if isinstance(m, nn.Linear) else m.in_channels * math.prod(m.kernel_size)
                )
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(x.flatten(1))


def alexnet_bn(num_classes: int = 1000) -> AlexNetBN:
    return AlexNetBN(num_classes)
