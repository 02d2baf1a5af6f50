"""Small models for the pruning engine's tests."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_stack(second: int = 16) -> nn.Module:
    """conv(3->8)+BN+ReLU, conv(8->second)+BN+ReLU, global pool, linear(second->4); seeded."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, second, 3, padding=1), nn.BatchNorm2d(second), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(second, 4),
    )  # fmt: skip
