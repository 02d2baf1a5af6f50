"""VGG for 32x32 inputs with a single linear classifier, named as Distiller's ``vgg*_cifar``.

``features`` is one flat Sequential (conv, [bn,] relu, and max-pools) so parameter names are
``features.<index>.weight`` exactly as in Distiller's schedules; ``classifier`` is Linear(512, classes).
"""

from __future__ import annotations

import torch
from torch import nn

POOL = "M"
CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    "vgg13": [64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    "vgg16": [64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL],
    "vgg19": [64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL]
    + [512, 512, 512, 512, POOL, 512, 512, 512, 512, POOL],
}


def make_features(config: list[int | str], batch_norm: bool, in_channels: int = 3) -> nn.Sequential:
    layers: list[nn.Module] = []
    for item in config:
        if item == POOL:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        assert isinstance(item, int)
        layers.append(nn.Conv2d(in_channels, item, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(item))
        layers.append(nn.ReLU(inplace=True))
        in_channels = item
    return nn.Sequential(*layers)


class VGGCifar(nn.Module):
    def __init__(self, features: nn.Sequential, num_classes: int = 10) -> None:
        super().__init__()
        self.features = features
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


def _factory(config: str, batch_norm: bool):
    def factory(num_classes: int = 10) -> VGGCifar:
        return VGGCifar(make_features(CONFIGS[config], batch_norm), num_classes=num_classes)

    return factory


vgg11_cifar = _factory("vgg11", False)
vgg11_bn_cifar = _factory("vgg11", True)
vgg13_cifar = _factory("vgg13", False)
vgg13_bn_cifar = _factory("vgg13", True)
vgg16_cifar = _factory("vgg16", False)
vgg16_bn_cifar = _factory("vgg16", True)
vgg19_cifar = _factory("vgg19", False)
vgg19_bn_cifar = _factory("vgg19", True)
