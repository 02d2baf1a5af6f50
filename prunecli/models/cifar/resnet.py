"""ResNet for CIFAR (He et al. 2016, option B shortcuts) named exactly as Distiller's ``resnet*_cifar``.

Stages of 16/32/64 channels on 32x32 inputs; the first block of a stage that changes width or
stride gets a ``downsample`` of a 1x1 convolution plus BatchNorm (so resnet20_cifar has
270,896 parameters and 40,813,184 MACs, the figures Distiller's schedules quote).
"""

from __future__ import annotations

import torch
from torch import nn

from prunecli.models.modules import EltwiseAdd, conv3x3


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=False)
        self.downsample = downsample
        self.stride = stride
        self.residual_eltwiseadd = EltwiseAdd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu2(self.residual_eltwiseadd(residual, out))


def shortcut(inplanes: int, planes: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and inplanes == planes:
        return None
    return nn.Sequential(
        nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(planes),
    )


class ResNetCifar(nn.Module):
    def __init__(self, blocks_per_stage: list[int], num_classes: int = 10) -> None:
        super().__init__()
        self.inplanes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._stage(16, blocks_per_stage[0], stride=1)
        self.layer2 = self._stage(32, blocks_per_stage[1], stride=2)
        self.layer3 = self._stage(64, blocks_per_stage[2], stride=2)
        self.avgpool = nn.AvgPool2d(8, stride=1)
        self.fc = nn.Linear(64 * BasicBlock.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _stage(self, planes: int, count: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(self.inplanes, planes, stride, shortcut(self.inplanes, planes, stride))]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x)
        return self.fc(x.view(x.size(0), -1))


def _depth_factory(blocks: int):
    def factory(num_classes: int = 10) -> ResNetCifar:
        return ResNetCifar([blocks] * 3, num_classes=num_classes)

    return factory


resnet20_cifar = _depth_factory(3)
resnet32_cifar = _depth_factory(5)
resnet44_cifar = _depth_factory(7)
resnet56_cifar = _depth_factory(9)
resnet110_cifar = _depth_factory(18)
