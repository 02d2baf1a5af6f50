"""The LeNet-like CIFAR network of the PyTorch tutorial, named as Distiller's ``simplenet_cifar``."""

from __future__ import annotations

import torch
from torch import nn


class SimplenetCifar(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.relu_conv1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.relu_conv2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.relu_fc1 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu_fc2 = nn.ReLU()
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu_conv1(self.conv1(x)))
        x = self.pool2(self.relu_conv2(self.conv2(x)))
        x = x.flatten(1)
        x = self.relu_fc2(self.fc2(self.relu_fc1(self.fc1(x))))
        return self.fc3(x)


def simplenet_cifar(num_classes: int = 10) -> SimplenetCifar:
    return SimplenetCifar(num_classes)
