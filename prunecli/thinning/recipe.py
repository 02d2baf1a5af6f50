"""ThinningRecipe: which indices each tensor keeps and the new module attributes.

Plain data only (ints, strings, lists), so it survives ``torch.load(weights_only=True)`` and
can rebuild a compact model from a freshly built dense one
(:func:`prunecli.thinning.execute.apply_recipe`). This module holds the data; ``execute`` acts on
models with it and is the only one of the two that imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prunecli.errors import ThinningError

RECIPE_FORMAT = "prunecli-thinning-recipe"
RECIPE_VERSION = 1


@dataclass
class ThinningRecipe:
    """``tensors[name] = [(dim, kept_indices), ...]`` applied in order; ``modules[name] = {attr: value}``."""

    tensors: dict[str, list[tuple[int, list[int]]]] = field(default_factory=dict)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    removed_channels: int = 0  # group channels removed (statistics only)
    #: one entry per thinning folded into this recipe: ``Verification.to_dict()`` (plain figures)
    checks: list[dict[str, Any]] = field(default_factory=list)
    #: what the user must hear about (a tensor whose every filter was pruned, kept at one channel)
    warnings: list[str] = field(default_factory=list)
    #: ``scales[name] = [(dim, parts, part, factor), ...]``: after slicing, part ``part`` of ``parts``
    #: equal parts of the tensor along ``dim`` is multiplied by ``factor`` (the query rows of an
    #: attention whose heads were narrowed, so that ``q . k / sqrt(head_dim)`` keeps its value)
    scales: dict[str, list[tuple[int, int, int, float]]] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not self.tensors

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RECIPE_FORMAT,
            "version": RECIPE_VERSION,
            "tensors": {
                name: [[int(d), [int(i) for i in idx]] for d, idx in steps]
                for name, steps in self.tensors.items()
            },
            "modules": {
                name: {k: _plain(v) for k, v in attrs.items()} for name, attrs in self.modules.items()
            },
            "removed_channels": int(self.removed_channels),
            "checks": [dict(c) for c in self.checks],
            "warnings": [str(w) for w in self.warnings],
            "scales": {
                name: [[int(d), int(n), int(k), float(f)] for d, n, k, f in steps]
                for name, steps in self.scales.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThinningRecipe:
        if not isinstance(data, dict) or data.get("format") != RECIPE_FORMAT:
            raise ThinningError(
                "not a thinning recipe (missing format 'prunecli-thinning-recipe')",
                hint="pass the 'recipe' entry of a compact checkpoint written by prunecli thin",
            )
        if int(data.get("version", 0)) > RECIPE_VERSION:
            raise ThinningError(
                f"thinning recipe version {data.get('version')} is newer than this prunecli supports",
                hint="upgrade prunecli",
            )
        tensors = {
            name: [(int(d), [int(i) for i in _as_list(idx)]) for d, idx in steps]
            for name, steps in data.get("tensors", {}).items()
        }
        modules = {
            name: {k: _attr(v) for k, v in attrs.items()} for name, attrs in data.get("modules", {}).items()
        }
        checks = [dict(c) for c in data.get("checks", []) if isinstance(c, dict)]
        warnings = [str(w) for w in data.get("warnings", []) if isinstance(w, str)]
        scales = {
            name: [(int(d), int(n), int(k), float(f)) for d, n, k, f in steps]
            for name, steps in data.get("scales", {}).items()
        }
        return cls(tensors, modules, int(data.get("removed_channels", 0)), checks, warnings, scales)

    def under(self, prefix: str) -> ThinningRecipe:
        """The same recipe for a model holding the thinned one as sub-module ``prefix``."""
        if not prefix:
            return self

        def full(name: str) -> str:
            return f"{prefix}.{name}" if name else prefix

        return ThinningRecipe(
            {full(n): [(d, list(idx)) for d, idx in steps] for n, steps in self.tensors.items()},
            {full(n): dict(attrs) for n, attrs in self.modules.items()},
            self.removed_channels,
            scales={full(n): list(steps) for n, steps in self.scales.items()},
        )

    def then(self, later: ThinningRecipe) -> ThinningRecipe:
        """One recipe equal to applying ``self`` and then ``later`` (thinning twice composes)."""
        tensors = {name: [(d, list(idx)) for d, idx in steps] for name, steps in self.tensors.items()}
        for name, steps in later.tensors.items():
            current = tensors.setdefault(name, [])
            for dim, idx in steps:
                prior = next((k for k, (d, _) in enumerate(current) if d == dim), None)
                if prior is None:
                    current.append((dim, list(idx)))
                else:
                    base = current[prior][1]
                    current[prior] = (dim, [base[i] for i in idx])
        modules = {name: dict(attrs) for name, attrs in self.modules.items()}
        for name, attrs in later.modules.items():
            modules.setdefault(name, {}).update(attrs)
        scales = {name: list(steps) for name, steps in self.scales.items()}
        for name, steps in later.scales.items():
            scales.setdefault(name, []).extend(steps)  # parts keep their layout: factors multiply
        return ThinningRecipe(
            tensors,
            modules,
            self.removed_channels + later.removed_channels,
            self.checks + later.checks,
            self.warnings + later.warnings,
            scales,
        )


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [int(v) for v in value]
    return value


def _attr(value: Any) -> Any:
    return tuple(int(v) for v in value) if isinstance(value, list) else value


def _as_list(idx: Any) -> list[int]:
    if isinstance(idx, torch.Tensor):
        return idx.tolist()
    return list(idx)


def submodule(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule(name)`` through the module dicts directly.

    Thinning looks up every tensor several times; ``get_submodule``'s per-level attribute checks
    cost more than the lookups themselves. Names it cannot resolve go to ``get_submodule``, which
    raises its usual error.
    """
    module = model
    try:
        for part in name.split(".") if name else ():
            module = module._modules[part]  # type: ignore[assignment]
    except (KeyError, TypeError):
        return model.get_submodule(name)
    if module is None:
        return model.get_submodule(name)
    return module


def tensor_by_name(model: nn.Module, name: str) -> torch.Tensor:
    module_name, _, attr = name.rpartition(".")
    try:
        module = submodule(model, module_name)
    except AttributeError as exc:
        raise ThinningError(f"the model has no module '{module_name}' named in the recipe") from exc
    t = module._parameters.get(attr)
    if t is None:
        t = module._buffers.get(attr)
    if t is None:
        raise ThinningError(
            f"the model has no parameter or buffer '{name}' named in the recipe",
            hint="rebuild the same architecture the recipe was made for",
        )
    return t
