"""ResNets in Distiller's module layout for quantization: ``relu1``/``relu2`` (``relu3``) and ``add`` modules.

Distiller builds its ImageNet ResNets from these blocks, not torchvision's: every ReLU is its own
module and the residual addition is a module (``EltwiseAdd``), so quantizers and activation
statistics can address them by name (``layer4.1.relu2``, ``layer1.0.add``). Parameter names and
shapes are torchvision's, so torchvision weights load unchanged. Build one with the model spec
``prunecli.models.imagenet.distiller_resnet:resnet18``; the zoo's ``resnet18`` stays torchvision's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from prunecli.models.modules import EltwiseAdd


class DistillerBasicBlock(BasicBlock):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self.relu
        self.relu1 = nn.ReLU(inplace=True)
        self.add = EltwiseAdd(inplace=True)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(self.add(out, identity))


class DistillerBottleneck(Bottleneck):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self.relu
        self.relu1 = nn.ReLU(inplace=True)
        self.relu2 = nn.ReLU(inplace=True)
        self.add = EltwiseAdd(inplace=True)
        self.relu3 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(self.add(out, identity))


def resnet18(**kwargs: Any) -> ResNet:
    return ResNet(DistillerBasicBlock, [2, 2, 2, 2], **kwargs)


def resnet34(**kwargs: Any) -> ResNet:
    return ResNet(DistillerBasicBlock, [3, 4, 6, 3], **kwargs)


def resnet50(**kwargs: Any) -> ResNet:
    return ResNet(DistillerBottleneck, [3, 4, 6, 3], **kwargs)
