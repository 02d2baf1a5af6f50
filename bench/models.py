"""Models by name: ``torchvision:NAME`` (random weights) or a prunecli model-zoo name."""

from __future__ import annotations

import torch
from torch import nn

from bench import ours


def build(name: str, *, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if name.startswith("torchvision:"):
        import torchvision

        return torchvision.models.get_model(name.split(":", 1)[1], weights=None)
    return ours.create_model(name)


def example_input(side: int, batch: int = 1, *, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, side, side, generator=generator)


def conv_weight_names(model: nn.Module) -> list[str]:
    return [f"{name}.weight" for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def classifier(model: nn.Module) -> nn.Module:
    """The last Linear layer: its outputs are the classes, never pruned."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model has no Linear classifier")
    return linears[-1]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
