"""Distiller checkpoints: recognise them, and map their dictionary to the prunecli layout.

The original ``.pth.tar`` is read by :mod:`.distiller_pickle` (its optimizer class and thinning
recipes stood in for by local classes, nothing imported or executed); a file someone already
converted to plain data (the same keys, recipes as ``{"modules", "parameters"}`` dicts and the
optimizer class as its name) reads directly. Either way the result is the dictionary below,
mapped here. The thinning recipes need the dense model to translate (:mod:`.distiller_recipe`),
so they travel in ``extras["distiller"]`` until :func:`prunecli.checkpoint.model.resolve` builds it.
"""

from __future__ import annotations

from typing import Any

import torch

from prunecli.errors import CheckpointError, SourceLocation

from .distiller_recipe import normalise_name
from .schema import build_checkpoint
from .sniff import PickleScan

#: keys Distiller's save_checkpoint writes (any two of them identify the file)
DISTILLER_KEYS = frozenset(
    {"arch", "thinning_recipes", "compression_sched", "optimizer_type", "optimizer_state_dict", "is_parallel"}
)

__all__ = ["DISTILLER_KEYS", "from_converted", "is_converted", "is_pickled_distiller", "normalise_name"]


def is_pickled_distiller(scan: PickleScan) -> bool:
    if any(g.startswith("distiller.") for g in scan.globals):
        return True
    return len(DISTILLER_KEYS & scan.strings) >= 2 and "state_dict" in scan.strings


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
            hint="pass the original Distiller .pth.tar (see docs/checkpoint-format.md, 'Distiller checkpoints')",
        )
    return recipes


def _optimizer_state(data: dict[str, Any]) -> dict[str, Any] | None:
    state = data.get("optimizer_state_dict")
    if isinstance(state, dict) and isinstance(state.get("param_groups"), list):
        return state
    return None


def from_converted(data: dict[str, Any], path: str) -> dict[str, Any]:
    """Map a Distiller checkpoint dict to a prunecli checkpoint (model rebuilt later from ``arch``).

    Kept: weights (DataParallel's ``module.`` dropped), masks, epoch, the optimizer's class name
    and state, ``extras`` (best_top1, ...), arch/dataset, and the thinning recipes (translated once
    the model is built).
    """
    if data.get("quantizer_metadata"):
        raise CheckpointError(
            "this Distiller checkpoint holds a quantized model (quantizer_metadata), which prunecli does "
            "not read",
            location=SourceLocation(path),
            hint="pass a checkpoint saved before quantization (pruning, thinning and optimizer state are read)",
        )
    sched = data.get("compression_sched") or {}
    masks_dict = sched.get("masks_dict", {}) if isinstance(sched, dict) else {}
    state_dict = {normalise_name(k): v for k, v in data["state_dict"].items()}
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad or not isinstance(masks_dict, dict):
        raise CheckpointError(
            "converted Distiller checkpoint has non-tensor entries in 'state_dict' "
            f"({', '.join(map(str, bad[:5]))}) or a 'compression_sched' without a masks_dict",
            location=SourceLocation(path),
            hint="pass the original Distiller .pth.tar (see docs/checkpoint-format.md, 'Distiller checkpoints')",
        )
    extras = data.get("extras") if isinstance(data.get("extras"), dict) else {}
    epoch = data.get("epoch")
    return build_checkpoint(
        state_dict=state_dict,
        masks={normalise_name(k): v for k, v in masks_dict.items()},
        optimizer_type=data["optimizer_type"] if isinstance(data.get("optimizer_type"), str) else None,
        optimizer=_optimizer_state(data),
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
