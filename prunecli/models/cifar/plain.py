"""The shortcut-free "plain" CIFAR network of He et al., named as Distiller's ``plain20_cifar``."""

from __future__ import annotations

import torch
from torch import nn

from prunecli.models.modules import conv3x3


class PlainBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, batch_norm: bool = True) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes) if batch_norm else None
        self.relu1 = nn.ReLU(inplace=False)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes) if batch_norm else None
        self.relu2 = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        if self.bn1 is not None:
            out = self.bn1(out)
        out = self.conv2(self.relu1(out))
        if self.bn2 is not None:
            out = self.bn2(out)
        return self.relu2(out)


class PlainCifar(nn.Module):
    def __init__(self, blocks_per_stage: list[int], num_classes: int = 10, batch_norm: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16) if batch_norm else None
        self.relu = nn.ReLU(inplace=True)
        widths, strides, inplanes = (16, 32, 64), (1, 2, 2), 16
        for i, (planes, stride, count) in enumerate(zip(widths, strides, blocks_per_stage), start=1):
            blocks = [PlainBlock(inplanes, planes, stride, batch_norm)]
            blocks += [PlainBlock(planes, planes, 1, batch_norm) for _ in range(count - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            inplanes = planes
        self.avgpool = nn.AvgPool2d(8, stride=1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if self.bn1 is not None:
            x = self.bn1(x)
        x = self.relu(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x)
        return self.fc(x.view(x.size(0), -1))


def plain20_cifar(num_classes: int = 10) -> PlainCifar:
    return PlainCifar([3, 3, 3], num_classes=num_classes)


def plain20_cifar_nobn(num_classes: int = 10) -> PlainCifar:
    return PlainCifar([3, 3, 3], num_classes=num_classes, batch_norm=False)
