"""Torch-Pruning (DepGraph): uniform channel pruning of every group, the classifier left alone."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from bench.machine import package_version
from bench.models import classifier
from bench.results import NOT_INSTALLED, Unavailable


def version() -> str | None:
    """The installed version, or None when ``torch_pruning`` cannot be imported."""
    try:
        _tp()
    except Unavailable:
        return None
    return package_version("torch-pruning") or "unknown"


def _tp():
    try:
        import torch_pruning
    except ImportError as exc:
        raise Unavailable(NOT_INSTALLED) from exc
    return torch_pruning


def pruner(
    model: nn.Module, example_input: torch.Tensor, ratio: float, *, iterative_steps: int = 1, **kwargs
):
    """A magnitude (L1) pruner at ``ratio`` of the channels of every group, as in Torch-Pruning's README."""
    tp = _tp()
    factory = getattr(tp.pruner, "BasePruner", None) or tp.pruner.MagnitudePruner
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return factory(
            model,
            example_input,
            importance=tp.importance.MagnitudeImportance(p=1),
            pruning_ratio=ratio,
            iterative_steps=iterative_steps,
            ignored_layers=[classifier(model)],
            **kwargs,
        )


def prune(model: nn.Module, example_input: torch.Tensor, ratio: float) -> nn.Module:
    """Dependency analysis plus one pruning step; the model shrinks in place."""
    p = pruner(model, example_input, ratio)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p.step()
    return model


def prune_vit(model: nn.Module, example_input: torch.Tensor, ratio: float) -> nn.Module:
    """Torch-Pruning's recipe for torchvision ViTs: attention heads declared, ``hidden_dim`` set by hand
    afterwards (its reshape uses that attribute), as Torch-Pruning's ViT example does."""
    heads = {m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    p = pruner(model, example_input, ratio, num_heads=heads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p.step()
    model.hidden_dim = model.conv_proj.out_channels
    return model
