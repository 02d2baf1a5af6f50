"""Carry out a recipe: slice tensors, gradients, masks and optimizer state; set module attributes.

Parameters keep their identity (``param.data`` is replaced), so optimizer ``param_groups`` stay
valid, and autograd's cached gradient accumulator is dropped so that a graph of an earlier step
still alive in the caller's loop does not pin the old shape. Per-parameter optimizer state with the parameter's shape (SGD ``momentum_buffer``, Adam's
``exp_avg``/``exp_avg_sq``/``max_exp_avg_sq``, ...) is sliced the same way. Every change is logged
in an :class:`UndoLog` so a failed verification can put the model back exactly.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

import torch
from torch import nn

from prunecli.errors import ThinningError
from prunecli.thinning.recipe import ThinningRecipe, submodule, tensor_by_name


class UndoLog:
    """Restore actions, run newest first."""

    def __init__(self) -> None:
        self._actions: list[Callable[[], None]] = []

    def add(self, action: Callable[[], None]) -> None:
        self._actions.append(action)

    def undo(self) -> None:
        while self._actions:
            self._actions.pop()()


def execute_recipe(
    model: nn.Module,
    recipe: ThinningRecipe,
    *,
    masks: MutableMapping[str, torch.Tensor | None] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    undo: UndoLog | None = None,
) -> None:
    for name, steps in recipe.tensors.items():
        for dim, idx in steps:
            _slice_tensor(model, name, dim, idx, masks, optimizer, undo)
    for name, scales in recipe.scales.items():
        _scale_tensor(model, name, scales, undo)
    for module_name, attrs in recipe.modules.items():
        module = submodule(model, module_name)
        for attr, value in attrs.items():
            old = getattr(module, attr)
            setattr(module, attr, value)
            if undo is not None:
                undo.add(lambda m=module, a=attr, v=old: setattr(m, a, v))


def _slice_tensor(model, name, dim, idx, masks, optimizer, undo) -> None:
    t = tensor_by_name(model, name)
    size = t.shape[dim]
    if size == len(idx):
        return  # already this size (identity, or a recipe re-applied to a thin model)
    if idx and max(idx) >= size:
        raise ThinningError(
            f"recipe keeps index {max(idx)} of '{name}' along dim {dim}, which has only {size}",
            hint="the recipe belongs to a different architecture or was already applied",
        )
    index = torch.as_tensor(idx, dtype=torch.long, device=t.device)
    old_shape = tuple(t.shape)
    if isinstance(t, nn.Parameter):
        old_data, old_grad = t.data, t.grad
        set_shape_changing_data(t, t.data.index_select(dim, index))
        if old_grad is not None:
            t.grad = old_grad.index_select(dim, index) if tuple(old_grad.shape) == old_shape else None
        if undo is not None:
            undo.add(lambda p=t, d=old_data, g=old_grad: _restore_param(p, d, g))
        if optimizer is not None:
            _slice_optimizer_state(optimizer, t, old_shape, dim, index, undo)
    else:
        module_name, _, attr = name.rpartition(".")
        module = submodule(model, module_name)
        module._buffers[attr] = t.index_select(dim, index)
        if undo is not None:
            undo.add(lambda m=module, a=attr, v=t: m._buffers.__setitem__(a, v))
    if masks is not None:
        mask = masks.get(name)
        if mask is not None and tuple(mask.shape) == old_shape:
            masks[name] = mask.index_select(dim, index.to(mask.device))
            if undo is not None:
                undo.add(lambda n=name, v=mask: masks.__setitem__(n, v))


def _scale_tensor(model, name: str, scales, undo) -> None:
    """Multiply parts of a parameter (the query rows of narrowed attention heads) by their factors."""
    t = tensor_by_name(model, name)
    old = t.data
    new = old.clone()
    for dim, parts, part, factor in scales:
        size = new.shape[dim] // parts
        new.narrow(dim, part * size, size).mul_(factor)
    t.data = new
    if undo is not None:
        undo.add(lambda p=t, d=old: setattr(p, "data", d))


def set_shape_changing_data(p: nn.Parameter, data: torch.Tensor) -> None:
    """``p.data = data`` that also drops ``p``'s cached gradient accumulator.

    Autograd caches one accumulator per parameter, holding the parameter's shape, for as long as
    some graph references it; setting ``.data`` renews it only when the dtype or device changes.
    Passing through a placeholder of another dtype forces that renewal, so the next backward
    accumulates gradients of the new shape.
    """
    other = torch.float64 if data.dtype != torch.float64 else torch.float32
    p.data = torch.empty(0, dtype=other, device=data.device)
    p.data = data


def _restore_param(p: nn.Parameter, data: torch.Tensor, grad: torch.Tensor | None) -> None:
    set_shape_changing_data(p, data)
    p.grad = grad


def _slice_optimizer_state(optimizer, p, old_shape, dim, index, undo) -> None:
    state: dict[str, Any] = optimizer.state.get(p, {})
    for key, value in list(state.items()):
        if isinstance(value, torch.Tensor) and tuple(value.shape) == old_shape:
            state[key] = value.index_select(dim, index.to(value.device))
            if undo is not None:
                undo.add(lambda s=state, k=key, v=value: s.__setitem__(k, v))


# -- module attributes after slicing -------------------------------------------------------
def _conv_attrs(m: nn.Module, kind: str) -> dict[str, Any]:
    out_c = m.weight.shape[0]
    if kind == "depthwise":
        mult = m.out_channels // m.groups
        groups = out_c // mult
        return {"out_channels": out_c, "in_channels": groups, "groups": groups}
    return {"out_channels": out_c, "in_channels": m.weight.shape[1] * m.groups}


def _linear_attrs(m: nn.Module, kind: str) -> dict[str, Any]:
    return {"out_features": m.weight.shape[0], "in_features": m.weight.shape[1]}


def _bn_attrs(m: nn.Module, kind: str) -> dict[str, Any]:
    ref = m.running_mean if m.running_mean is not None else m.weight
    return {"num_features": ref.shape[0]}


def _ln_attrs(m: nn.Module, kind: str) -> dict[str, Any]:
    if m.weight is None:
        return {}
    return {"normalized_shape": tuple(m.weight.shape)}


def _gn_attrs(m: nn.Module, kind: str) -> dict[str, Any]:
    return {"num_channels": m.weight.shape[0]} if m.weight is not None else {}


def _attention_attrs(m: nn.Module, kind: str) -> dict[str, Any]:
    """The widths; ``num_heads`` or ``head_dim`` are size attributes of the graph (whichever shrank)."""
    embed = m.in_proj_weight.shape[1]
    return {"embed_dim": embed, "kdim": embed, "vdim": embed}


ATTRIBUTE_RULES: dict[str, Callable[[nn.Module, str], dict[str, Any]]] = {
    "attention": _attention_attrs,
    "conv": _conv_attrs,
    "depthwise": _conv_attrs,
    "grouped": _conv_attrs,
    "linear": _linear_attrs,
    "batchnorm": _bn_attrs,
    "layernorm": _ln_attrs,
    "groupnorm": _gn_attrs,
}


def module_attributes(
    model: nn.Module, module_kinds: dict[str, str], touched: set[str]
) -> dict[str, dict[str, Any]]:
    """New attributes of every touched module, read from its (already sliced) tensors."""
    result: dict[str, dict[str, Any]] = {}
    for name in sorted(touched):
        kind = module_kinds.get(name)
        rule = ATTRIBUTE_RULES.get(kind or "")
        if rule is None:
            continue
        m = submodule(model, name)
        attrs = {k: v for k, v in rule(m, kind).items() if getattr(m, k) != v}
        if attrs:
            result[name] = attrs
    return result


def apply_recipe(model: nn.Module, recipe: ThinningRecipe | dict[str, Any]) -> nn.Module:
    """Reshape a freshly built dense ``model`` to the thinned shapes (values are then loaded)."""
    if isinstance(recipe, dict):
        recipe = ThinningRecipe.from_dict(recipe)
    execute_recipe(model, recipe)
    return model
