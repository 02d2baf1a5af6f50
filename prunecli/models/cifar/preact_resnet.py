"""Pre-activation ResNet for CIFAR (He et al., "Identity Mappings"), named as Distiller's ``preact_resnet*_cifar``.

Each block normalises its input (``pre_bn``/``pre_relu``) before ``conv1``; the stage-changing
shortcut is, by default, parameter-free (2x2 average pool plus zero channel padding), or a
1x1 convolution with ``conv_downsample=True`` (Distiller's ``*_conv_ds`` variants).
"""

from __future__ import annotations

import torch
from torch import nn

from prunecli.models.modules import conv3x3


class PreactBasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        preact_downsample: bool = True,
    ) -> None:
        super().__init__()
        self.pre_bn = nn.BatchNorm2d(inplanes)
        self.pre_relu = nn.ReLU(inplace=False)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=False)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = downsample
        self.stride = stride
        self.preact_downsample = preact_downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = self.pre_relu(self.pre_bn(x))
        out = self.relu(self.bn(self.conv1(preact)))
        out = self.conv2(out)
        if self.downsample is None:
            residual = x
        else:
            residual = self.downsample(preact if self.preact_downsample else x)
        return out + residual


class ChannelPad(nn.Module):
    """Zero-pads the channel dimension on both sides (the identity shortcut of a widening stage)."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.pad(x, (0, 0, 0, 0, self.pad, self.pad))


class PreactResNetCifar(nn.Module):
    def __init__(self, blocks_per_stage: list[int], num_classes: int = 10, conv_downsample: bool = False):
        super().__init__()
        self.inplanes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.layer1 = self._stage(16, blocks_per_stage[0], 1, conv_downsample)
        self.layer2 = self._stage(32, blocks_per_stage[1], 2, conv_downsample)
        self.layer3 = self._stage(64, blocks_per_stage[2], 2, conv_downsample)
        self.final_bn = nn.BatchNorm2d(64)
        self.final_relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(8, stride=1)
        self.fc = nn.Linear(64, num_classes)

    def _stage(self, planes: int, count: int, stride: int, conv_downsample: bool) -> nn.Sequential:
        downsample: nn.Module | None = None
        if stride != 1 or self.inplanes != planes:
            if conv_downsample:
                downsample = nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False)
            else:
                downsample = nn.Sequential(nn.AvgPool2d(2), ChannelPad(self.inplanes // 2))
        layers = [PreactBasicBlock(self.inplanes, planes, stride, downsample, conv_downsample)]
        self.inplanes = planes
        layers += [PreactBasicBlock(planes, planes) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(self.final_relu(self.final_bn(x)))
        return self.fc(x.view(x.size(0), -1))


def _depth_factory(blocks: int, conv_ds: bool = False):
    def factory(num_classes: int = 10, conv_downsample: bool = conv_ds) -> PreactResNetCifar:
        return PreactResNetCifar([blocks] * 3, num_classes=num_classes, conv_downsample=conv_downsample)

    return factory


preact_resnet20_cifar = _depth_factory(3)
preact_resnet32_cifar = _depth_factory(5)
preact_resnet44_cifar = _depth_factory(7)
preact_resnet56_cifar = _depth_factory(9)
preact_resnet110_cifar = _depth_factory(18)
preact_resnet20_cifar_conv_ds = _depth_factory(3, True)
preact_resnet32_cifar_conv_ds = _depth_factory(5, True)
preact_resnet44_cifar_conv_ds = _depth_factory(7, True)
preact_resnet56_cifar_conv_ds = _depth_factory(9, True)
preact_resnet110_cifar_conv_ds = _depth_factory(18, True)
