"""ResNeXt-101 32x4d under Distiller's name, ``resnext101_32x4d``, with its parameter names.

Distiller took this model from the ``pretrainedmodels`` package, a conversion of a Lua Torch
model: everything sits in one ``features`` Sequential (stem at 0-3, the four stages at 4-7)
and the classifier is ``last_linear``. A bottleneck block ``features.S.B`` is

* ``.0`` a map over two branches whose outputs are summed:

  * ``.0.0`` the residual branch: ``.0.0.0`` = (1x1 conv ``.0``, BN ``.1``, ReLU, grouped 3x3
    conv ``.3``, BN ``.4``, ReLU), then the 1x1 conv ``.0.0.1`` and its BN ``.0.0.2``;
  * ``.0.1`` the shortcut: (1x1 conv ``.0``, BN ``.1``) in a block that changes the shape,
    else the identity;

* ``.1`` the sum and ``.2`` the final ReLU.

The layers themselves are torchvision's: the model is built as torchvision's ``ResNet`` with
``Bottleneck`` blocks, ``[3, 4, 23, 3]``, ``groups=32`` and ``width_per_group=4`` (same
initialisation, stride on the 3x3 convolution), and its modules are placed at these paths, so
Distiller's schedules (``features.4.0.0.0.0.0.weight`` ...) resolve unchanged and the output
equals that of the torchvision model the layers came from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from prunecli.models.modules import EltwiseAdd

if TYPE_CHECKING:  # torchvision is imported when the model is built: every CLI start would pay for it
    from torchvision.models.resnet import Bottleneck, ResNet


class BranchSum(nn.Module):
    """Run the residual branch and the shortcut on one input; the sum is the next module's job."""

    def __init__(self, residual: nn.Module, shortcut: nn.Module) -> None:
        super().__init__()
        # named by position (``0`` and ``1``) as in the converted Lua model
        self.add_module("0", residual)
        self.add_module("1", shortcut)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        residual, shortcut = self._modules["0"], self._modules["1"]
        return residual(x), shortcut(x)


class SumPair(EltwiseAdd):
    """The residual add, taking the pair :class:`BranchSum` returns."""

    def forward(self, pair: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        return super().forward(*pair)


def _block(b: Bottleneck) -> nn.Sequential:
    """One torchvision bottleneck, its modules re-parented at Distiller's paths."""
    inner = nn.Sequential(b.conv1, b.bn1, nn.ReLU(inplace=True), b.conv2, b.bn2, nn.ReLU(inplace=True))
    residual = nn.Sequential(inner, b.conv3, b.bn3)
    shortcut = b.downsample if b.downsample is not None else nn.Identity()
    return nn.Sequential(BranchSum(residual, shortcut), SumPair(), nn.ReLU(inplace=True))


class ResNeXtDistiller(nn.Module):
    """A torchvision ResNet's modules laid out as Distiller's ``resnext101_32x4d``."""

    def __init__(self, net: ResNet) -> None:
        super().__init__()
        stages = [
            nn.Sequential(*(_block(b) for b in stage))
            for stage in (net.layer1, net.layer2, net.layer3, net.layer4)
        ]
        self.features = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, *stages)
        # adaptive, so inputs smaller than 224x224 also work (224 gives the original 7x7 pooling)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.last_linear = net.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avg_pool(self.features(x))
        return self.last_linear(torch.flatten(x, 1))


def torchvision_resnext101_32x4d(num_classes: int = 1000) -> ResNet:
    """The torchvision network whose layers :func:`resnext101_32x4d` re-arranges."""
    from torchvision.models.resnet import Bottleneck, ResNet

    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes=num_classes, groups=32, width_per_group=4)


def resnext101_32x4d(num_classes: int = 1000) -> ResNeXtDistiller:
    return ResNeXtDistiller(torchvision_resnext101_32x4d(num_classes))
