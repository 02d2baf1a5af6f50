"""Build checkpoint files in Distiller's own format, without Distiller.

Distiller's ``save_checkpoint`` pickles a dict holding the optimizer class and a list of
``distiller.thinning.ThinningRecipe`` namedtuples. To write the same bytes, a stand-in namedtuple
is registered under the module name ``distiller.thinning`` only while ``torch.save`` runs, so the
pickle names exactly the class Distiller's would. Nothing named ``distiller`` is importable
afterwards: a reader that tried to import it would fail.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn


@contextlib.contextmanager
def fake_module(module_name: str, **attrs: Any) -> Iterator[types.ModuleType]:
    """A module importable under ``module_name`` (and its parents) for the duration of the block."""
    added = []
    parts = module_name.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        if name not in sys.modules:
            sys.modules[name] = types.ModuleType(name)
            added.append(name)
    module = sys.modules[module_name]
    for key, value in attrs.items():
        setattr(module, key, value)
    try:
        yield module
    finally:
        for name in added:
            del sys.modules[name]


def recipe_class() -> type:
    """A namedtuple that pickles as ``distiller.thinning.ThinningRecipe`` (Distiller's field names)."""
    cls = namedtuple("ThinningRecipe", ["modules", "parameters"])
    cls.__module__ = "distiller.thinning"
    return cls


def save_distiller(path: Path, checkpoint: dict[str, Any], *, legacy: bool = False) -> Path:
    """``torch.save`` as Distiller does; ``legacy`` writes the pre-1.6 format of its torch 1.3 era.

    ``checkpoint["thinning_recipes"]`` is given as ``(modules, parameters)`` pairs and pickled as
    Distiller's namedtuple.
    """
    cls = recipe_class()
    data = dict(checkpoint)
    if "thinning_recipes" in data:
        data["thinning_recipes"] = [cls(m, p) for m, p in data["thinning_recipes"]]
    with fake_module("distiller.thinning", ThinningRecipe=cls):
        torch.save(data, path, _use_new_zipfile_serialization=not legacy)
    return path


def parallel(state: dict[str, Any]) -> dict[str, Any]:
    """Names as DataParallel writes them (Distiller's GPU checkpoints)."""
    return {f"module.{k}": v for k, v in state.items()}


def thin_filters(model: nn.Module, conv: str, bn: str, successor: str, keep: list[int]) -> tuple[dict, dict]:
    """Distiller's recipe for removing filters of ``conv`` (and its BatchNorm, and ``successor``'s
    input channels), written the way ``create_thinning_recipe_filters`` records it, with the
    DataParallel names its checkpoints carry."""
    idx = torch.tensor(keep)
    n = len(keep)
    modules = {
        f"module.{conv}": {"out_channels": n},
        f"module.{successor}": {"in_channels": n},
        f"module.{bn}": {"num_features": n, "running_mean": (0, idx), "running_var": (0, idx)},
    }
    parameters = {
        f"module.{conv}.weight": [(0, idx)],
        f"module.{successor}.weight": [(1, idx)],
        f"module.{bn}.weight": [(0, idx)],
        f"module.{bn}.bias": [(0, idx)],
    }
    return modules, parameters
