"""Automated Gradual Pruning (Zhu & Gupta 2017) targets, at epoch granularity as in Distiller.

Every AGP class (AutomatedGradualPruner and the ranked ``_AGP`` forms) is an engine composition
(:mod:`prunecli.pruners.compositions`) whose per-tensor schedule,
:class:`prunecli.engine.schedules.AgpLevels`, mixes :class:`AgpMixin` in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prunecli.pruners.base import require_meta
from prunecli.schedule import timeline


def agp_span(start: int, end: int, freq: int | None) -> int:
    """The offset of the last pruning epoch (0 for an ``epochs`` list, where AGP is undefined)."""
    return 0 if freq is None else timeline.agp_span(start, end, freq)


class AgpMixin:
    """Turns policy metadata into the AGP target sparsity of the current epoch."""

    initial_sparsity: float
    final_sparsity: float
    follows_agp = True

    def _init_agp(self, initial_sparsity: float, final_sparsity: float) -> None:
        if not final_sparsity > initial_sparsity:
            raise ValueError(
                f"final_sparsity ({final_sparsity}) must be greater than initial_sparsity ({initial_sparsity})"
            )
        self.initial_sparsity = initial_sparsity
        self.final_sparsity = final_sparsity

    def agp_target(self, meta: Mapping[str, Any] | None, owner: str = "") -> float:
        """The level of the current epoch; ``owner`` names the pruner in the error without meta."""
        meta = require_meta(meta, owner or type(self).__name__)
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
