"""The PyTorch-examples MNIST network, named as Distiller's ``simplenet_mnist``.

Like Distiller's, it returns log-probabilities (``log_softmax``); cross-entropy on them equals
NLL, so the usual loss still trains it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class SimplenetMnist(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5, 1)
        self.conv2 = nn.Conv2d(20, 50, 5, 1)
        self.fc1 = nn.Linear(4 * 4 * 50, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return F.log_softmax(self.fc2(x), dim=1)


def simplenet_mnist(num_classes: int = 10) -> SimplenetMnist:
    return SimplenetMnist(num_classes)
