"""Distiller checkpoints: recognise the pickled originals, and read their plain-data conversion.

A Distiller ``.pth.tar`` pickles the optimizer class and ``ThinningRecipe`` namedtuples, so it cannot
be read without importing and running Distiller code; prunecli refuses it and explains the one-time
conversion below (run where Distiller is installed and the file is trusted). The converted file holds
only tensors and plain data, and prunecli maps it to its own checkpoint layout.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from prunecli.errors import CheckpointError, SourceLocation

from .schema import build_checkpoint
from .sniff import PickleScan, unsafe_globals

#: keys Distiller's save_checkpoint writes (any two of them identify the file)
DISTILLER_KEYS = frozenset(
    {"arch", "thinning_recipes", "compression_sched", "optimizer_type", "optimizer_state_dict", "is_parallel"}
)

CONVERSION_RECIPE = """\
# run once, in the Python environment where Distiller is installed, on a file you trust
import torch
ckpt = torch.load("checkpoint.pth.tar", map_location="cpu")
plain = {
    "arch": ckpt["arch"],
    "dataset": ckpt.get("dataset"),
    "epoch": ckpt.get("epoch"),
    "state_dict": dict(ckpt["state_dict"]),
    "compression_sched": {"masks_dict": ckpt["compression_sched"]["masks_dict"]}
    if "compression_sched" in ckpt else None,
    "thinning_recipes": [{"modules": r.modules, "parameters": r.parameters}
                         for r in ckpt.get("thinning_recipes", [])],
    "optimizer_type": ckpt["optimizer_type"].__name__ if "optimizer_type" in ckpt else None,
    "extras": {k: (v.item() if hasattr(v, "item") else v) for k, v in ckpt.get("extras", {}).items()},
}
torch.save(plain, "checkpoint.plain.pth.tar")"""

_PARALLEL_PREFIX = re.compile(r"(^|\.)module\.")


def normalise_name(name: str) -> str:
    """Drop DataParallel's ``module.`` segments (``module.conv1.weight``, ``features.module.0.weight``)."""
    return _PARALLEL_PREFIX.sub(r"\1", name)


def is_pickled_distiller(scan: PickleScan) -> bool:
    if any(g.startswith("distiller.") for g in scan.globals):
        return True
    return len(DISTILLER_KEYS & scan.strings) >= 2 and "state_dict" in scan.strings


def refusal(path: str, scan: PickleScan) -> CheckpointError:
    found = ", ".join(unsafe_globals(scan)) or "pickled Python classes"
    return CheckpointError(
        "this is a Distiller checkpoint: it pickles Python classes "
        f"({found}), so it cannot be read without executing code from the file",
        location=SourceLocation(path),
        hint="convert it once to plain data where Distiller is installed, then pass the converted file:\n"
        + CONVERSION_RECIPE
        + "\n(see docs/checkpoint-format.md, 'Distiller checkpoints')",
    )


def is_converted(data: dict[str, Any]) -> bool:
    return (
        "format" not in data and isinstance(data.get("state_dict"), dict) and bool(DISTILLER_KEYS & set(data))
    )


def _plain_recipes(recipes: Any, path: str) -> list[dict[str, Any]]:
    if recipes is None:
        return []
    if not isinstance(recipes, list) or not all(
        isinstance(r, dict) and isinstance(r.get("modules"), dict) and isinstance(r.get("parameters"), dict)
        for r in recipes
    ):
        raise CheckpointError(
            "'thinning_recipes' must be a list of {'modules': ..., 'parameters': ...} dicts",
            location=SourceLocation(path),
            hint="convert with the recipe in docs/checkpoint-format.md ('Distiller checkpoints')",
        )
    return recipes


def from_converted(data: dict[str, Any], path: str) -> dict[str, Any]:
    """Map a converted Distiller dict to a prunecli checkpoint (model rebuilt later from ``arch``)."""
    sched = data.get("compression_sched") or {}
    masks_dict = sched.get("masks_dict", {}) if isinstance(sched, dict) else {}
    state_dict = {normalise_name(k): v for k, v in data["state_dict"].items()}
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad or not isinstance(masks_dict, dict):
        raise CheckpointError(
            "converted Distiller checkpoint has non-tensor entries in 'state_dict' "
            f"({', '.join(map(str, bad[:5]))}) or a 'compression_sched' without a masks_dict",
            location=SourceLocation(path),
            hint="convert with the recipe in docs/checkpoint-format.md ('Distiller checkpoints')",
        )
    extras = data.get("extras") if isinstance(data.get("extras"), dict) else {}
    epoch = data.get("epoch")
    return build_checkpoint(
        state_dict=state_dict,
        masks={normalise_name(k): v for k, v in masks_dict.items()},
        optimizer_type=data["optimizer_type"] if isinstance(data.get("optimizer_type"), str) else None,
        epoch=epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None,
        extras={
            **extras,
            "source": "distiller",
            "distiller": {
                "arch": data.get("arch"),
                "dataset": data.get("dataset"),
                "is_parallel": data.get("is_parallel"),
                "thinning_recipes": _plain_recipes(data.get("thinning_recipes"), path),
            },
        },
    )


def _select(tensor: torch.Tensor, directive: Any) -> torch.Tensor:
    dim, indices = int(directive[0]), torch.as_tensor(directive[1], dtype=torch.long)
    if len(directive) == 4:  # Linear after a conv: select channels through a 4-D view, then flatten back
        view4d, view2d = tuple(directive[2]), tuple(directive[3])
        if tensor.size() == torch.Size(view2d):
            return tensor
        return torch.index_select(tensor.reshape(view4d), dim, indices).reshape(view2d)
    if tensor.size(dim) == len(indices):  # already thin: Distiller skips it too
        return tensor
    return torch.index_select(tensor, dim, indices)


def apply_recipes(model: nn.Module, recipes: list[dict[str, Any]]) -> None:
    """Give a dense model the thin shapes of Distiller's recipes, in order (values come from state_dict)."""
    for recipe in recipes:
        for module_name, attrs in recipe["modules"].items():
            module = model.get_submodule(normalise_name(module_name))
            for attr, value in attrs.items():
                if isinstance(value, (tuple, list)) and len(value) == 2:
                    setattr(module, attr, _select(getattr(module, attr), value))
                else:
                    setattr(module, attr, value)
        for param_name, directives in recipe["parameters"].items():
            module_name, _, attr = normalise_name(param_name).rpartition(".")
            module = model.get_submodule(module_name)
            param = getattr(module, attr)
            data = param.data
            for directive in directives:
                data = _select(data, directive)
            param.data = data
