"""Distiller's own decision procedure as an engine composition.

Distiller's pruners decide each tensor alone, at the moment the pruning policy asks for its
mask: the per-tensor schedule says what the tensor is asked for now (a level or a threshold),
the target cuts it into groups, the metric scores them and a per-tensor rule keeps or removes
them. Two options of its ranked pruners change *whose* decision a tensor takes: a Leader group
(every listed tensor takes the first one's) and ``auto_dependency`` coupling (every tensor of a
channel group takes the group's, :mod:`prunecli.compression.coupling`).
:mod:`prunecli.pruners.compositions` names each Distiller class as such a composition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from prunecli.engine.allocation import TENSOR_RULES, TensorRule
from prunecli.engine.metrics import Metric, RowMetric, ScoreContext
from prunecli.engine.schedules import TensorSchedule
from prunecli.engine.targets import Target, Unit
from prunecli.pruners.base import Pruner


class LeaderGroup:
    """Distiller's ``group_dependency: Leader``: every listed tensor takes the decision of the first
    (the leader), made on the leader's weights and remade when the level changes.

    Its state keeps Distiller's attribute names, so checkpoints of either load.
    """

    state_keys = ("leader_binary_map", "last_target_sparsity")

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.leader_binary_map: torch.Tensor | None = None
        self.last_target_sparsity: float | None = None

    def keep(self, pruner: TensorwisePruner, amount: Any, model: nn.Module) -> torch.Tensor | None:
        if amount != self.last_target_sparsity or self.leader_binary_map is None:
            name = pruner.params_names[0]
            self.leader_binary_map = pruner.keep(name, dict(model.named_parameters())[name], amount)
            self.last_target_sparsity = amount if self.leader_binary_map is not None else None
        return self.leader_binary_map

    def forget(self) -> None:
        self.leader_binary_map = None
        self.last_target_sparsity = None


class TensorwisePruner(Pruner):
    """One tensor at a time: schedule (how much now) x target x metric x rule.

    ``rule`` is a name of :data:`~prunecli.engine.allocation.TENSOR_RULES` or a
    :class:`~prunecli.engine.allocation.TensorRule`. ``targets`` overrides the target per tensor
    (StructureParameterPruner names a group type per tensor); ``weights`` lists the tensors it
    owns (``None``: any tensor its schedule has an amount for, Distiller's ``'*'`` tables).
    ``group_type`` is the Distiller group type a ranked preset prunes (``auto_dependency`` couples
    the Filters/3D/Channels ones); ``leader`` makes the weights a Leader group.
    """

    def __init__(
        self,
        name: str,
        *,
        preset: str,
        schedule: TensorSchedule,
        rule: str | TensorRule,
        target: Target,
        metric: Metric,
        weights: Sequence[str] | None = None,
        targets: Mapping[str, Target] | None = None,
        group_type: str | None = None,
        leader: bool = False,
        model: nn.Module | None = None,
    ) -> None:
        super().__init__(name, model)
        self.preset = preset
        self.schedule = schedule
        self.rule = TENSOR_RULES[rule]() if isinstance(rule, str) else rule
        self.target, self.metric = target, metric
        self.targets = dict(targets or {})
        self.group_type = group_type
        #: Leader groups share the leader's decision; ranked presets keep its (empty) state either way
        self.leader = LeaderGroup(leader) if group_type is not None else None
        #: set by :func:`prunecli.compression.coupling.couple_pruners` under ``auto_dependency``
        self.coupling: Any = None
        #: the schedule's ``prune_normalized`` argument (set by the schedule builder): couple this
        #: pruner's channels across their groups, channels normalised by LayerNorm/GroupNorm included
        self.prune_normalized = False
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

    @property
    def group_dependency(self) -> str | None:
        """Distiller's argument: ``"Leader"`` when the weights are a Leader group."""
        return "Leader" if self.leader is not None and self.leader.enabled else None

    @property
    def ranking_metric(self) -> RowMetric:
        """The weight metric coupled channel groups are ranked by (Distiller's mean L1 for the
        data-driven rankers, whose statistics belong to single layers)."""
        from prunecli.engine.metrics import METRICS

        return self.metric if isinstance(self.metric, RowMetric) else METRICS.get("mean_l1")()

    def target_of(self, name: str) -> Target:
        return self.targets.get(name, self.target)

    def keep(self, name: str, tensor: torch.Tensor, amount: Any, mask: torch.Tensor | None = None):
        """The keep vector of ``name``'s groups for ``amount`` (``None``: leave its mask alone)."""
        target = self.target_of(name)
        unit = Unit(name, (name,))
        target.check(unit, {name: tensor})
        with torch.no_grad():
            grouped = {name: tensor.detach()}
            current = None
            if self.rule.needs_current:
                current = target.view(unit, {name: mask if mask is not None else torch.ones_like(tensor)})[:, 0]

            def scores() -> torch.Tensor | None:
                if isinstance(self.metric, RowMetric):
                    return target.reduce(self.metric, unit, grouped)
                values = self.metric.score(target, unit, ScoreContext({name: tensor}, self.model))
                self.pending = self.pending or values is None
                return values

            return self.rule.keep(scores, amount, current, target.count(unit, grouped))

    def mask_from_keep(self, name: str, tensor: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``name``'s mask from a 0/1 keep vector of its groups (the rule sets the kept groups' value)."""
        values = self.rule.mask_values(keep)
        return self.target_of(name).expand(Unit(name, (name,)), values, {name: tensor})[name]

    def set_param_mask(self, param, param_name, maskers, meta=None) -> None:
        names = getattr(self, "params_names", None)
        if names is not None and param_name not in names:
            return
        amount = self.schedule.amount(param_name, param, meta)
        if amount is None:
            return
        masker = maskers[param_name]
        if self.coupling is not None:
            mask = self.coupling.mask(self, param_name, amount)
            if mask is not None:
                masker.mask = self._combined(masker.mask, mask)
            return
        if self.leader is not None and self.leader.enabled:
            keep = self.leader.keep(self, amount, (meta or {}).get("model", self.model))
        else:
            keep = self.keep(param_name, param, amount, masker.mask)
        if keep is not None:
            masker.mask = self.mask_from_keep(param_name, param, keep)

    def _combined(self, existing: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
        """With ``prune_normalized`` a tensor can be in two pruners' groups (an MLP's output rows
        carry the embedding, its columns the hidden layer): each keeps the other's zeros."""
        if not self.prune_normalized or existing is None or existing.shape != mask.shape:
            return mask
        return existing.to(mask.dtype) * mask

    # observation hooks of data-driven metrics ---------------------------------------------------
    def attach(self, model: nn.Module) -> None:
        self.metric.attach(model, getattr(self, "params_names", None) or [])

    def detach(self) -> None:
        self.metric.detach()

    def after_backward(self, params: Mapping[str, torch.Tensor]) -> None:
        self.metric.observe(params)

    def forget_shapes(self) -> None:
        if self.leader is not None:
            self.leader.forget()
        if self.coupling is not None:
            self.coupling.forget()
        self.metric.reset()

    # state: the schedule's, the Leader group's and the metric's, under Distiller's key names ------
    def state_dict(self) -> dict[str, Any]:
        state = self.schedule.state_dict()
        if self.leader is not None:
            state.update({key: getattr(self.leader, key) for key in LeaderGroup.state_keys})
        return {**state, **self.metric.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Each part takes its own keys back: the schedule's and the Leader group's by name, the
        metric the rest (reading the metric's own state for its keys would gather statistics
        across processes)."""
        state = dict(state)
        self.schedule.load_state_dict({k: state.pop(k) for k in self.schedule.state_keys if k in state})
        leader_state = {key: state.pop(key) for key in LeaderGroup.state_keys if key in state}
        if self.leader is not None:
            for key, value in leader_state.items():
                setattr(self.leader, key, value)
        self.metric.load_state_dict(state)
