"""Distiller's own decision procedure as an engine composition.

Distiller's pruners decide each tensor alone, at the moment the pruning policy asks for its
mask: the per-tensor schedule says what the tensor is asked for now (a level or a threshold),
the target cuts it into groups, the metric scores them and a per-tensor rule keeps or removes
them. :mod:`prunecli.pruners.compositions` names each Distiller class as such a composition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from prunecli.engine.allocation import TENSOR_RULES
from prunecli.engine.metrics import RowMetric
from prunecli.engine.schedules import TensorSchedule
from prunecli.engine.targets import Target, Unit
from prunecli.pruners.base import Pruner


class TensorwisePruner(Pruner):
    """One tensor at a time: schedule (how much now) x target x metric x rule (level/threshold/splice).

    ``targets`` overrides the target per tensor (StructureParameterPruner names a group type per
    tensor); ``weights`` lists the tensors it owns (``None``: any tensor its schedule has an
    amount for, Distiller's ``'*'`` tables).
    """

    def __init__(
        self,
        name: str,
        *,
        preset: str,
        schedule: TensorSchedule,
        rule: str,
        target: Target,
        metric: RowMetric,
        weights: Sequence[str] | None = None,
        targets: Mapping[str, Target] | None = None,
        model: nn.Module | None = None,
    ) -> None:
        super().__init__(name, model)
        self.preset = preset
        self.schedule = schedule
        self.rule = rule
        self.decide = TENSOR_RULES[rule]
        self.target, self.metric = target, metric
        self.targets = dict(targets or {})
        if weights is not None:
            self.params_names = [weights] if isinstance(weights, str) else list(weights)

    @property
    def follows_agp(self) -> bool:  # type: ignore[override]
        return self.schedule.follows_agp

    @property
    def levels(self) -> dict[str, float] | None:
        """The per-tensor level table, for schedules that have one (a policy's ``levels`` sets it)."""
        return getattr(self.schedule, "levels", None)

    @levels.setter
    def levels(self, table: Mapping[str, float]) -> None:
        if hasattr(self.schedule, "levels"):
            self.schedule.levels = dict(table)

    def set_param_mask(self, param, param_name, maskers, meta=None) -> None:
        names = getattr(self, "params_names", None)
        if names is not None and param_name not in names:
            return
        amount = self.schedule.amount(param_name, param, meta)
        if amount is None:
            return
        masker = maskers[param_name]
        target = self.targets.get(param_name, self.target)
        unit = Unit(param_name, (param_name,))
        with torch.no_grad():
            tensor = {param_name: param.detach()}
            scores = self.metric.reduce(target.view(unit, tensor))
            current = None
            if self.rule == "splice":  # the only rule that keeps the previous decision in its band
                mask = masker.mask if masker.mask is not None else torch.ones_like(param)
                current = target.view(unit, {param_name: mask})[:, 0]
            keep = self.decide(scores, amount, current)
            masker.mask = target.expand(unit, keep, tensor)[param_name]

    def state_dict(self) -> dict[str, Any]:
        return self.schedule.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.schedule.load_state_dict(state)
