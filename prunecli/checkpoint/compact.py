"""A compact checkpoint: a checkpoint whose model is thinned, for ``prunecli run`` and ``prunecli thin``.

Both go through :func:`thin_checkpoint`, so a compact file has one meaning (see
:mod:`prunecli.thinning.compact` for the rules on recipes and masks).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunecli.thinning.compact import CompactModel, ThinOptions, thin_to_compact

from .plain import own_storage, stored_state_dict


@dataclass
class CompactCheckpoint:
    """The compact checkpoint's payload and the thinned model it was made from."""

    payload: dict[str, Any]
    compact: CompactModel


def thin_checkpoint(
    payload: Mapping[str, Any],
    model: nn.Module,
    example_input: Any,
    *,
    masks: Mapping[str, torch.Tensor | None] | None = None,
    options: ThinOptions | None = None,
    root: str = "",
) -> CompactCheckpoint:
    """Thin ``model`` (holding ``payload``'s weights) in place and return the compact payload.

    ``masks`` default to the payload's own (pass the live ones, on the model's device, from a run).
    The payload's ``recipe`` is the thinning already applied to ``model``; the result's recipe adds
    this one. Optimizer and compression-scheduler state hold dense shapes, so a compact file
    drops them (training from it restarts them); every other key is kept. ``root``: see
    :func:`prunecli.thinning.compact.thin_to_compact`.
    """
    stored = payload.get("masks") or {}
    compact = thin_to_compact(
        model,
        example_input,
        masks=stored if masks is None else masks,
        previous=[payload.get("recipe")],
        options=options,
        root=root,
    )
    result = dict(payload)
    result.update(
        state_dict=stored_state_dict(compact.model),
        masks={name: own_storage(mask) for name, mask in compact.masks.items()},
        recipe=None if compact.recipe.is_empty() else compact.recipe.to_dict(),
        optimizer=None,
        scheduler=None,
    )
    return CompactCheckpoint(result, compact)


def default_compact_path(path: str | os.PathLike[str]) -> Path:
    """``NAME.pt`` -> ``NAME.compact.pt`` next to it."""
    path = Path(path)
    stem = path.name[: -len(".pt")] if path.name.endswith(".pt") else path.name
    return path.with_name(f"{stem}.compact.pt")
