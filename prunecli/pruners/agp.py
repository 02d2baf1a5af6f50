"""Automated Gradual Pruning (Zhu & Gupta 2017) targets, at epoch granularity as in Distiller."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from prunecli.pruners.base import Pruner, require_meta
from prunecli.pruners.criteria import level_mask
from prunecli.schedule import timeline


def agp_span(start: int, end: int, freq: int | None) -> int:
    """The offset of the last pruning epoch (0 for an ``epochs`` list, where AGP is undefined)."""
    return 0 if freq is None else timeline.agp_span(start, end, freq)


class AgpMixin:
    """Turns policy metadata into the AGP target sparsity of the current epoch."""

    initial_sparsity: float
    final_sparsity: float

    def _init_agp(self, initial_sparsity: float, final_sparsity: float) -> None:
        if not final_sparsity > initial_sparsity:
            raise ValueError(
                f"final_sparsity ({final_sparsity}) must be greater than initial_sparsity ({initial_sparsity})"
            )
        self.initial_sparsity = initial_sparsity
        self.final_sparsity = final_sparsity

    def agp_target(self, meta: Mapping[str, Any] | None) -> float:
        meta = require_meta(meta, type(self).__name__)
        freq = meta["frequency"]
        if freq is None:
            raise ValueError("AGP pruners need starting_epoch/ending_epoch/frequency, not an epochs list")
        return timeline.agp_target(
            self.initial_sparsity,
            self.final_sparsity,
            meta["current_epoch"],
            meta["starting_epoch"],
            meta["ending_epoch"],
            freq,
        )


class AutomatedGradualPruner(AgpMixin, Pruner):
    """Element-wise level pruning to the AGP target of the epoch."""

    def __init__(
        self,
        name: str,
        initial_sparsity: float,
        final_sparsity: float,
        weights: list[str],
        model: nn.Module | None = None,
    ) -> None:
        Pruner.__init__(self, name, model)
        self._init_agp(initial_sparsity, final_sparsity)
        self.params_names = [weights] if isinstance(weights, str) else list(weights)

    def set_param_mask(self, param, param_name, maskers, meta=None) -> None:
        if param_name not in self.params_names:
            return
        target = self.agp_target(meta)
        if target == 0:
            return  # Distiller's prune_level leaves the mask alone at level 0
        maskers[param_name].mask = level_mask(param, target)
