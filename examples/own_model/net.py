"""A small CNN of your own for the 8x8 digits, to prune from the command line.

Any ``nn.Module`` class or factory function works: name it as ``net.py:Net`` wherever prunecli
asks for a model (``--model``). ``num_classes`` is filled in from the data set.
"""

from __future__ import annotations

import torch
from torch import nn


class Net(nn.Module):
    """Two conv + BatchNorm blocks, global average pooling, a linear classifier."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))
