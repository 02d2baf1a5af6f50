"""A small residual CNN for the 8x8 scikit-learn digits, the offline quickstart model.

It reuses the CIFAR ResNet block (same ``conv1/bn1/relu1/conv2/bn2/relu2/downsample`` names),
so every schedule pattern that works on ``resnet20_cifar`` works here: a 32-channel stem, one
32-channel block at 8x8 and one 64-channel block at 4x4 with a 1x1 downsample shortcut.
About 77k parameters and 2.1M MACs per sample: trains to >95 % top-1 in well under a minute on
two CPU cores, and is wide enough that pruning half its filters still leaves a useful model.
"""

from __future__ import annotations

import torch
from torch import nn

from prunecli.models.cifar.resnet import BasicBlock, shortcut


class ResNetDigits(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 32, in_channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(width, width))
        self.layer2 = nn.Sequential(BasicBlock(width, 2 * width, 2, shortcut(width, 2 * width, 2)))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.avgpool(self.layer2(self.layer1(x)))
        return self.fc(x.flatten(1))


def resnet_digits(num_classes: int = 10, width: int = 32) -> ResNetDigits:
    return ResNetDigits(num_classes=num_classes, width=width)
