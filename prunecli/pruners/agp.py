"""Automated Gradual Pruning (Zhu & Gupta 2017) targets, at epoch granularity as in Distiller."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from prunecli.pruners.base import Pruner
from prunecli.pruners.criteria import level_mask


def _agp_formula() -> Callable[..., float]:
    try:
        from prunecli.schedule.timeline import agp_target
    except (
        ImportError
    ):  # the schedule package is built in parallel; same formula as Distiller's AgpPruningRate
        return _distiller_agp
    return agp_target


def _distiller_agp(initial: float, final: float, epoch: int, start: int, end: int, freq: int) -> float:
    span = ((end - start - 1) // freq) * freq
    if span <= 0:
        raise ValueError(f"AGP needs ending_epoch - starting_epoch - 1 >= frequency (span {span})")
    return final + (initial - final) * (1.0 - (epoch - start) / span) ** 3


def agp_span(start: int, end: int, freq: int | None) -> int:
    """The offset of the last pruning epoch; must be positive for AGP to be defined."""
    if freq is None:
        return 0
    return ((end - start - 1) // freq) * freq


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

    def agp_target(self, meta: dict) -> float:
        freq = meta["frequency"]
        if freq is None:
            raise ValueError("AGP pruners need starting_epoch/ending_epoch/frequency, not an epochs list")
        return _agp_formula()(
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

    def set_param_mask(self, param, param_name, maskers, meta) -> None:
        if param_name not in self.params_names:
            return
        maskers[param_name].mask = level_mask(param, self.agp_target(meta))
