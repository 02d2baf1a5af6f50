"""Pre-activation ResNet for ImageNet, named as Distiller's ``preact_resnet18`` .. ``preact_resnet152``.

The stem (conv1/bn1/relu1/maxpool) already activates, so the first block of ``layer1`` skips
its own pre-activation (its ``pre_bn`` is absent); blocks of later stages that downsample
pre-activate and feed the activated tensor to the 1x1 ``downsample.0`` convolution.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from prunecli.models.modules import conv3x3


class _PreactBlock(nn.Module):
    """Shared pre-activation and shortcut logic; subclasses build the body in Distiller's order."""

    expansion = 1

    def _preact(self, inplanes: int, preactivate: bool) -> None:
        self.pre_bn = nn.BatchNorm2d(inplanes) if preactivate else None
        self.pre_relu = nn.ReLU(inplace=True) if preactivate else None

    def _tail(self, stride: int, downsample: nn.Module | None, preactivate: bool) -> None:
        self.downsample = downsample
        self.stride = stride
        self.preactivate = preactivate

    def body(self, preact: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = self.pre_relu(self.pre_bn(x)) if self.pre_bn is not None else x
        out = self.body(preact)
        residual = self.downsample(preact) if self.downsample is not None else x
        return out + residual


class PreactBasicBlock(_PreactBlock):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None, preactivate=True):
        super().__init__()
        self._preact(inplanes, preactivate)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1_2 = nn.BatchNorm2d(planes)
        self.relu1_2 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self._tail(stride, downsample, preactivate)

    def body(self, preact: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu1_2(self.bn1_2(self.conv1(preact))))


class PreactBottleneck(_PreactBlock):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None, preactivate=True):
        super().__init__()
        self._preact(inplanes, preactivate)
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1_2 = nn.BatchNorm2d(planes)
        self.relu1_2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2_3 = nn.BatchNorm2d(planes)
        self.relu2_3 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self._tail(stride, downsample, preactivate)

    def body(self, preact: torch.Tensor) -> torch.Tensor:
        out = self.relu1_2(self.bn1_2(self.conv1(preact)))
        out = self.relu2_3(self.bn2_3(self.conv2(out)))
        return self.conv3(out)


class PreactResNet(nn.Module):
    def __init__(self, block: type[_PreactBlock], layers: list[int], num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i, (planes, count) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            setattr(self, f"layer{i}", self._stage(block, planes, count, 1 if i == 1 else 2))
        self.final_bn = nn.BatchNorm2d(512 * block.expansion)
        self.final_relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(7, stride=1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = math.prod(m.kernel_size) * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))

    def _stage(self, block: type[_PreactBlock], planes: int, count: int, stride: int) -> nn.Sequential:
        outplanes = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != outplanes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, outplanes, kernel_size=1, stride=stride, bias=False)
            )
        # the stem has already activated the input of layer1's first block
        layers = [block(self.inplanes, planes, stride, downsample, preactivate=stride != 1)]
        self.inplanes = outplanes
        layers += [block(outplanes, planes) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu1(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(self.final_relu(self.final_bn(x)))
        return self.fc(x.view(x.size(0), -1))


def _factory(block: type[_PreactBlock], layers: list[int]):
    def factory(num_classes: int = 1000) -> PreactResNet:
        return PreactResNet(block, layers, num_classes=num_classes)

    return factory


preact_resnet18 = _factory(PreactBasicBlock, [2, 2, 2, 2])
preact_resnet34 = _factory(PreactBasicBlock, [3, 4, 6, 3])
preact_resnet50 = _factory(PreactBottleneck, [3, 4, 6, 3])
preact_resnet101 = _factory(PreactBottleneck, [3, 4, 23, 3])
preact_resnet152 = _factory(PreactBottleneck, [3, 8, 36, 3])
