"""MobileNet v1 (Howard et al. 2017) named as Distiller's ``mobilenet``, ``mobilenet_050`` ...

Everything lives in one Sequential ``model``: ``model.0`` is the stem (conv, bn, relu) and
``model.1`` .. ``model.13`` are depthwise-separable units whose indices 0/1 are the depthwise
conv + BN and 3/4 the pointwise conv + BN, so ``model.4.3.weight`` is a pointwise filter bank
as in Distiller's schedules. Widths are ``max(floor(base * multiplier), min_channels)``.
"""

from __future__ import annotations

from math import floor

import torch
from torch import nn

BASE_CHANNELS = (32, 64, 128, 256, 512, 1024)
# (input width index, output width index, stride) for the 13 separable units
UNITS = [(0, 1, 1), (1, 2, 2), (2, 2, 1), (2, 3, 2), (3, 3, 1), (3, 4, 2)]
UNITS += [(4, 4, 1)] * 5 + [(4, 5, 2), (5, 5, 1)]


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, groups: int = 1):
    return [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


def separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        *conv_bn_relu(cin, cin, 3, stride=stride, padding=1, groups=cin), *conv_bn_relu(cin, cout, 1)
    )


class MobileNet(nn.Module):
    def __init__(self, channel_multiplier: float = 1.0, min_channels: int = 8, num_classes: int = 1000):
        super().__init__()
        if channel_multiplier <= 0:
            raise ValueError(f"channel_multiplier must be > 0, got {channel_multiplier}")
        self.channels = [max(floor(n * channel_multiplier), min_channels) for n in BASE_CHANNELS]
        c = self.channels
        self.model = nn.Sequential(
            nn.Sequential(*conv_bn_relu(3, c[0], 3, stride=2, padding=1)),
            *(separable(c[i], c[o], s) for i, o, s in UNITS),
            nn.AvgPool2d(7),
        )
        self.fc = nn.Linear(c[5], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.model(x)
        return self.fc(x.view(x.size(0), -1))


def mobilenet(num_classes: int = 1000, channel_multiplier: float = 1.0) -> MobileNet:
    return MobileNet(channel_multiplier, num_classes=num_classes)


def _width(multiplier: float):
    def factory(num_classes: int = 1000) -> MobileNet:
        return MobileNet(multiplier, num_classes=num_classes)

    return factory


mobilenet_025 = _width(0.25)
mobilenet_050 = _width(0.5)
mobilenet_075 = _width(0.75)
