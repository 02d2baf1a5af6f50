"""Distiller's thinning recipes, translated into one prunecli :class:`ThinningRecipe`.

A Distiller checkpoint of a thinned model stores the dense architecture's name plus the list of
recipes that shrank it, applied in order when the file is loaded. Each recipe holds

* module directives ``{module: {attribute: value}}`` -- new ``in_channels``/``out_channels``/
  ``groups``/``num_features``/``in_features`` values, and ``(dim, indices)`` for a BatchNorm's
  ``running_mean``/``running_var``;
* parameter directives ``{parameter: [(dim, indices), ...]}`` that keep ``indices`` along ``dim``,
  or ``(dim, indices, view_4d, view_2d)`` for a Linear layer fed by a flattened convolution: the
  weight is viewed as ``view_4d`` (out, channels, height, width), channels are selected, and the
  result is viewed back as ``view_2d``.

Distiller skips a directive whose tensor already has ``len(indices)`` entries along ``dim`` (which
makes re-running a recipe harmless), and sets ``in_channels`` on a Linear that has no such
attribute. The translation follows the tensor shapes as the recipes would change them, so it
reproduces both behaviours, and it checks every index against the dense model's shapes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from prunecli.errors import CheckpointError, SourceLocation

if TYPE_CHECKING:  # the thinning package is imported only when a recipe is translated
    from prunecli.thinning.recipe import ThinningRecipe

_PARALLEL_PREFIX = re.compile(r"(^|\.)module\.")
#: module directives that select entries of a buffer instead of setting an attribute
_BUFFER_DIRECTIVES = ("running_mean", "running_var")


def normalise_name(name: str) -> str:
    """Drop DataParallel's ``module.`` segments (``module.conv1.weight``, ``features.module.0.weight``)."""
    return _PARALLEL_PREFIX.sub(r"\1", name)


def _indices(value: Any) -> list[int]:
    if isinstance(value, torch.Tensor):
        return [int(i) for i in value.reshape(-1).tolist()]
    if isinstance(value, int):
        return [value]
    return [int(i) for i in value]


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value


def _empty() -> ThinningRecipe:
    from prunecli.thinning.recipe import ThinningRecipe

    return ThinningRecipe()


class _Translator:
    """Applies Distiller's directives to a table of shapes, writing the equivalent prunecli steps."""

    def __init__(self, model: nn.Module, path: str) -> None:
        self.path = path
        self.modules = dict(model.named_modules())
        self.shapes = {name: list(t.shape) for name, t in model.state_dict(keep_vars=True).items()}
        self.step = _empty()

    def fail(self, message: str) -> CheckpointError:
        return CheckpointError(
            f"its thinning recipe does not fit the model: {message}",
            location=SourceLocation(self.path),
            hint="the recipe was made for another architecture; pass the one it was trained with (--model)",
        )

    def select(self, name: str, dim: int, indices: list[int]) -> None:
        shape = self.shapes.get(name)
        if shape is None:
            raise self.fail(f"the model has no parameter or buffer '{name}'")
        if not 0 <= dim < len(shape):
            raise self.fail(f"'{name}' has {len(shape)} dimensions, the recipe selects along dim {dim}")
        if shape[dim] == len(indices):
            return  # already thin: Distiller skips the directive too
        if not indices or max(indices) >= shape[dim] or min(indices) < 0:
            raise self.fail(
                f"indices {min(indices, default=0)}..{max(indices, default=0)} of '{name}' "
                f"along dim {dim}, which has {shape[dim]} entries"
            )
        self.step.tensors.setdefault(name, []).append((dim, indices))
        shape[dim] = len(indices)

    def select_through_view(self, name: str, directive: Sequence[Any]) -> None:
        """``(dim, indices, view_4d, view_2d)``: channels of a flattened (C, H, W) input, kept whole."""
        dim, indices = int(directive[0]), _indices(directive[1])
        view4d, view2d = [int(v) for v in directive[2]], [int(v) for v in directive[3]]
        shape = self.shapes.get(name)
        if shape is None:
            raise self.fail(f"the model has no parameter '{name}'")
        if shape == view2d:
            return  # already thin
        if dim != 1 or len(view4d) != 4 or len(shape) != 2 or shape[1] != view4d[1] * view4d[2] * view4d[3]:
            raise self.fail(f"'{name}' of shape {tuple(shape)} cannot be viewed as {tuple(view4d)}")
        per_channel = view4d[2] * view4d[3]
        if max(indices, default=-1) >= view4d[1]:
            raise self.fail(f"channel {max(indices)} of '{name}', which has {view4d[1]} input channels")
        features = [c * per_channel + s for c in indices for s in range(per_channel)]
        self.select(name, 1, features)

    def module_attr(self, module_name: str, attr: str, value: Any) -> None:
        module = self.modules.get(module_name)
        if module is None:
            raise self.fail(f"the model has no module '{module_name}'")
        if attr in _BUFFER_DIRECTIVES:
            self.select(f"{module_name}.{attr}", int(value[0]), _indices(value[1]))
        elif hasattr(module, attr):
            self.step.modules.setdefault(module_name, {})[attr] = _scalar(value)
        # else: an attribute the module does not have (Distiller writes in_channels on a Linear);
        # the weight directive carries the change, and Linear sizes are derived below

    def linear_sizes(self) -> None:
        """A Linear's ``in_features``/``out_features`` follow its (possibly thinned) weight."""
        for name, module in self.modules.items():
            if isinstance(module, nn.Linear) and f"{name}.weight" in self.step.tensors:
                out_features, in_features = self.shapes[f"{name}.weight"]
                attrs = self.step.modules.setdefault(name, {})
                attrs.update(in_features=in_features, out_features=out_features)

    def take_step(self) -> ThinningRecipe:
        self.linear_sizes()
        step, self.step = self.step, _empty()
        return step


def to_prunecli(recipes: Sequence[Mapping[str, Any]], model: nn.Module, path: str) -> ThinningRecipe | None:
    """One prunecli recipe equal to executing Distiller's ``recipes`` in order on the dense ``model``.

    ``model`` is only read (for its module types and tensor shapes); ``None`` when nothing is thinned.
    """
    translator = _Translator(model, path)
    total = _empty()
    for recipe in recipes:
        modules, parameters = recipe.get("modules") or {}, recipe.get("parameters") or {}
        for module_name, attrs in modules.items():
            for attr, value in attrs.items():
                translator.module_attr(normalise_name(module_name), attr, value)
        for param_name, directives in parameters.items():
            name = normalise_name(param_name)
            for directive in directives:
                if len(directive) == 4:
                    translator.select_through_view(name, directive)
                else:
                    translator.select(name, int(directive[0]), _indices(directive[1]))
        total = total.then(translator.take_step())
    return None if total.is_empty() else total
