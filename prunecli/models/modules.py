"""Small building blocks shared by the zoo models."""

from __future__ import annotations

import torch
from torch import nn


class EltwiseAdd(nn.Module):
    """Residual addition as a module, so it shows up (and can be hooked) by name like Distiller's."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        res = inputs[0]
        if self.inplace:
            for t in inputs[1:]:
                res += t
        else:
            for t in inputs[1:]:
                res = res + t
        return res


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
