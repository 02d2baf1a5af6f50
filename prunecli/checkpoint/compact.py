"""A compact checkpoint: a checkpoint whose model is thinned, for ``prunecli run`` and ``prunecli thin``.

Both go through :func:`thin_checkpoint`, so a compact file has one meaning (see
:mod:`prunecli.thinning.compact` for the rules on recipes and masks); when the checkpoint carries a
quantization plan, both then convert it with :func:`quantize_checkpoint`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunecli.quantization.int8 import Int8Model, convert_folded, fold_for_int8
from prunecli.quantization.spec import QuantPlan
from prunecli.quantization.stored import INT8_KEY, PLAN_KEY, Int8Record
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


@dataclass
class Int8Checkpoint:
    """An int8 checkpoint's payload and the int8 model it stores."""

    payload: dict[str, Any]
    model: Int8Model


def quantize_checkpoint(
    payload: Mapping[str, Any], model: nn.Module, example_input: Any, plan: QuantPlan
) -> Int8Checkpoint:
    """Convert ``model`` (holding ``payload``'s float weights) to int8 with ``plan``; the int8 payload.

    BatchNorm is folded first (:func:`prunecli.quantization.int8.fold_for_int8`; the stored plan is
    the folded model's); the payload's ``state_dict`` becomes the folded model's float
    tensors without the quantized weights, which are stored as integer codes in
    ``extras["int8"]`` (:class:`prunecli.quantization.stored.Int8Record`). Masks describe the float
    weights before folding, so they are dropped (zeros stay zero codes); so are optimizer and
    scheduler state. ``model`` itself is not changed.
    """
    folded = fold_for_int8(model, plan, example_input)
    float_state = stored_state_dict(folded.model)
    int8 = convert_folded(folded.model, folded.plan, folded.pairs, codes=folded.codes)
    record = Int8Record(folded.plan, folded.pairs, int8.codes)
    quantized = {f"{name}.weight" for name in int8.codes}
    result = dict(payload)
    extras = {k: v for k, v in (payload.get("extras") or {}).items() if k != PLAN_KEY}
    extras[INT8_KEY] = record.to_dict()
    result.update(
        state_dict={k: v for k, v in float_state.items() if k not in quantized},
        masks={},
        optimizer=None,
        scheduler=None,
        extras=extras,
    )
    return Int8Checkpoint(result, int8)
