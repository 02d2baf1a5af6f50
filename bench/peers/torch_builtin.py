"""Masking with the two pruning utilities that ship with torch.

``torch.nn.utils.prune`` re-multiplies ``weight_orig * weight_mask`` in a forward pre-hook;
``torch.ao.pruning`` does the same through a ``FakeSparsity`` parametrization.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.ao.pruning import BaseSparsifier, WeightNormSparsifier
from torch.nn.utils import prune


def _module_of(model: nn.Module, param_name: str) -> tuple[nn.Module, str]:
    module_name, _, tensor = param_name.rpartition(".")
    return model.get_submodule(module_name), tensor


def nn_utils_prune(model: nn.Module, param_names: list[str], level: float) -> None:
    """Element-wise L1 masks at ``level`` through forward pre-hooks."""
    for name in param_names:
        module, tensor = _module_of(model, name)
        prune.l1_unstructured(module, tensor, amount=level)


class LevelSparsifier(BaseSparsifier):
    """Element-wise magnitude masks for tensors of any rank (WeightNormSparsifier handles 2-D only)."""

    def update_mask(self, module: nn.Module, tensor_name: str, sparsity_level: float, **kwargs) -> None:
        parametrization = getattr(module.parametrizations, tensor_name)
        magnitude = parametrization.original.detach().abs()
        k = int(sparsity_level * magnitude.numel())
        if k == 0:
            parametrization[0].mask.fill_(1)
            return
        threshold = magnitude.flatten().kthvalue(k).values
        parametrization[0].mask.copy_((magnitude > threshold).to(parametrization[0].mask.dtype))


def weight_norm_sparsifier_error(model: nn.Module, param_names: list[str], level: float) -> str | None:
    """Whether torch's stock element-wise sparsifier copes with these tensors (it fails on 4-D conv weights)."""
    probe = WeightNormSparsifier(sparsity_level=level, sparse_block_shape=(1, 1), zeros_per_block=1)
    try:
        probe.prepare(copy.deepcopy(model), [{"tensor_fqn": name} for name in param_names])
        probe.step()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
    return None


def ao_sparsifier(model: nn.Module, param_names: list[str], level: float) -> BaseSparsifier:
    """Element-wise masks at ``level`` through ``torch.ao.pruning`` parametrizations."""
    sparsifier = LevelSparsifier(defaults={"sparsity_level": level})
    sparsifier.prepare(model, [{"tensor_fqn": name} for name in param_names])
    with torch.no_grad():
        sparsifier.step()
    return sparsifier
