"""The pruner protocol: a pruner turns (parameter, policy metadata) into a mask in a masker.

The compression runtime owns one :class:`~prunecli.compression.masker.ParameterMasker` per
parameter; a pruner writes ``maskers[name].mask`` for the names it owns and ignores the rest,
exactly like Distiller's ``set_param_mask(param, param_name, zeros_mask_dict, meta)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

#: what a policy passes in ``meta`` for epoch-dependent pruners (Distiller's ``sched_metadata``)
EPOCH_META_KEYS = ("current_epoch", "starting_epoch", "ending_epoch", "frequency")


def require_meta(
    meta: Mapping[str, Any] | None, owner: str, keys: tuple[str, ...] = EPOCH_META_KEYS
) -> Mapping:
    """``meta`` with ``keys`` present, or a ValueError that says what to pass.

    One-shot pruners work without metadata (``meta=None``); pruners whose target depends on the
    epoch (AGP, Baidu RNN, growing Splicing) cannot guess it, so they say so instead of failing
    with a ``KeyError`` or ``TypeError``.
    """
    missing = [k for k in keys if meta is None or k not in meta]
    if missing:
        raise ValueError(
            f"{owner} depends on the epoch: set_param_mask needs meta with {', '.join(keys)} "
            f"(missing: {', '.join(missing)}); run it from a policy added with "
            "CompressionScheduler.add_policy, or pass e.g. meta={'current_epoch': 0, 'starting_epoch': 0, "
            "'ending_epoch': 10, 'frequency': 2}"
        )
    return meta  # type: ignore[return-value]


def wildcard_lookup(table: Mapping[str, Any], name: str) -> Any | None:
    """Distiller's ``table.get(name, table.get('*'))`` lookup for thresholds/levels/sensitivities."""
    if name in table:
        return table[name]
    return table.get("*")


class Pruner:
    """Base class; subclasses keep Distiller's constructor arguments as their YAML keys."""

    #: True when the pruner could not rank yet (no statistics) and wants another try next minibatch.
    pending: bool = False
    #: Recompute masks every this many training steps (0: at the policy's epochs only).
    every_steps: int = 0
    #: the level follows the AGP curve, so the policy needs starting/ending epochs and a frequency
    follows_agp: bool = False

    def __init__(self, name: str, model: nn.Module | None = None) -> None:
        self.name = name
        self.model = model

    def owned_names(self) -> list[str] | None:
        """The parameter names this pruner may mask (``None``: decided per name, e.g. by a '*')."""
        names = getattr(self, "params_names", None)
        return list(names) if names is not None else None

    def set_param_mask(
        self, param: torch.Tensor, param_name: str, maskers: Mapping, meta: Mapping[str, Any] | None = None
    ) -> None:
        """Write ``maskers[param_name].mask``; ``meta`` is the policy's epoch data (None for one-shot use)."""
        raise NotImplementedError

    def prepare_masks(self, params: Mapping[str, torch.Tensor], meta: dict) -> None:
        """Called once per pruning event before :meth:`set_param_mask` for each name, for pruners
        that decide all their tensors together (a global ranking)."""

    def loss_term(self, model: nn.Module) -> torch.Tensor | None:
        """A term the pruner adds to the training loss (a regularizer it trains with), or None."""
        return None

    def after_backward(self, params: Mapping[str, torch.Tensor]) -> None:
        """Called after every backward pass of the policy's epochs (gradient statistics)."""

    def attach(self, model: nn.Module) -> None:
        """Install whatever observation hooks the pruner needs (activation/gradient statistics)."""

    def detach(self) -> None:
        """Remove the hooks installed by :meth:`attach`."""

    def forget_shapes(self) -> None:
        """Drop cached per-structure data after the model was thinned (shapes changed)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
