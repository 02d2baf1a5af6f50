"""A model file whose factory fails: the error must name this file, without a traceback."""

from torch import nn


def Broken(num_classes: int = 10) -> nn.Module:
    raise ValueError("this factory always fails")
