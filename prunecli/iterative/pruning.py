"""Pruning one task: per-tensor levels, or an overall goal, with one engine target and metric.

:class:`LevelPruner` is the iterative loop's pruner. It composes the engine's target (what goes
together: ``filters``, ``coupled`` channel groups, single weights, ...) and metric (``l1``,
``fpgm``, ...) with an allocation, and prunes a model *to* a state described relative to the
dense model: a level of 0.5 on ``conv1.weight`` means half of the dense layer's groups are gone,
whether earlier iterations masked them or thinning already removed them. That makes a task's
levels mean the same thing whatever model it starts from.

A ``goal`` (``macs <= 0.6``) is met by searching the one level that, allocated by the pruner
(``uniform``: every unit at that level; ``global``: the engine's global ranking), brings the
measured cost under the goal; each unit is capped at ``max_level`` of its dense groups.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunecli.engine.allocation import Budget as AllocationBudget
from prunecli.engine.allocation import Candidate, keep_all_but
from prunecli.engine.compile import build_engine_pruner
from prunecli.engine.metrics import ScoreContext
from prunecli.engine.objectives import OBJECTIVES, Objective
from prunecli.engine.pruner import EnginePruner
from prunecli.iterative.task import Budget

#: targets whose removed groups thinning takes out of the model (the others stay masked)
THINNABLE_TARGETS = frozenset({"filters", "channels", "rows", "columns", "coupled"})

#: ``calibrate(model, after_backward)``: run a few training batches through ``model`` (forward,
#: loss, backward) and call ``after_backward()`` after each backward pass, without an optimizer
#: step; metrics that learn from training passes (taylor, apoz, ...) read them before pruning
Calibrate = Callable[[nn.Module, Callable[[], None]], None]

#: budget metric -> the engine objective measuring it
OBJECTIVE_OF = {"weights": "weights", "params": "parameters", "macs": "macs"}


class IterativePruningError(ValueError):
    """A pruner that cannot serve the iterative loop; ``key`` names the option at fault."""

    def __init__(self, message: str, hint: str, key: str = "pruner") -> None:
        super().__init__(message)
        self.message, self.hint, self.key = message, hint, key


def prunable_weights(model: nn.Module) -> list[str]:
    """Every convolution and linear weight except the last linear layer's (the classifier)."""
    names: list[str] = []
    last_linear: str | None = None
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_linear = f"{module_name}.weight"
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and module.weight.dim() > 1:
            names.append(f"{module_name}.weight")
    return [n for n in names if n != last_linear]


@dataclass
class DenseCounts:
    """What the dense model holds: the budget's denominators and every tensor's group count."""

    weights: float  # elements of the pruned tensors
    params: float
    macs: float
    groups: dict[str, int]  # tensor -> groups of the unit it belongs to


class LevelPruner:
    """Prunes to per-tensor levels or an overall goal (see the module docstring).

    ``target`` / ``metric`` / ``allocation`` are engine axes, given as a name or a mapping with
    ``kind`` and options, exactly as in a native schedule entry (``preset:`` works too, through
    ``axes``). ``weights`` lists the tensors to prune (default: :func:`prunable_weights`).
    ``calibrate`` feeds a metric that learns from training passes (``taylor``, ``movement``,
    ``apoz``, ``activation_mean``) just before each pruning step; such metrics are refused without it.
    """

    def __init__(
        self,
        target: str | Mapping[str, Any] = "filters",
        metric: str | Mapping[str, Any] = "l1",
        *,
        allocation: str | Mapping[str, Any] = "uniform",
        weights: Sequence[str] | None = None,
        calibrate: Calibrate | None = None,
        **axes: Any,
    ) -> None:
        self.axes: dict[str, Any] = {"target": target, "metric": metric, **axes}
        self.calibrate = calibrate
        allocation_spec = {"kind": allocation} if isinstance(allocation, str) else dict(allocation)
        if allocation_spec.get("kind") not in ("uniform", "global"):
            raise IterativePruningError(
                f"allocation {allocation_spec.get('kind')!r} cannot split an iterative goal",
                "use allocation: uniform or allocation: global",
                "allocation",
            )
        self.allocation = allocation_spec
        self.weights = list(weights) if weights is not None else None
        self.dense: DenseCounts | None = None
        self.example_input: Any = None
        #: prepared objectives by (metric, architecture): tracing a model is the slow part, and
        #: every copy of one architecture measures the same way
        self._objectives: dict[tuple[str, tuple[Any, ...]], Objective] = {}

    # ------------------------------------------------------------------ set-up
    def engine(self, model: nn.Module) -> EnginePruner:
        """The engine pruner for ``model`` as it is now (units are found again after thinning)."""
        assert self.weights is not None, "bind() the pruner to the dense model first"
        params = dict(model.named_parameters())
        weights = [w for w in self.weights if w in params]
        args = {**self.axes, "sparsity": 0.5, "weights": weights}
        if self.allocation["kind"] == "global":
            args["allocation"] = self.allocation
        pruner = build_engine_pruner("iterative", args, model, self.example_input)
        metric = pruner.metric
        if (metric.needs_forward or metric.needs_gradients) and self.calibrate is None:
            raise IterativePruningError(
                f"metric {metric.name} learns from training passes, and this pruner has no calibrate "
                "function to run them before pruning",
                "pass LevelPruner(..., calibrate=fn) (prunecli run does), or use a weight metric: l1, "
                "l2, lp, fpgm, bn_scale or random",
                "metric",
            )
        return pruner

    def _observe(self, pruner: EnginePruner, model: nn.Module) -> None:
        """Let a training-pass metric see ``calibrate``'s batches on ``model`` as it is now."""
        metric = pruner.metric
        if not (metric.needs_forward or metric.needs_gradients) or self.calibrate is None:
            return
        params = dict(model.named_parameters())
        metric.attach(model, pruner.params_names)
        try:
            self.calibrate(model, lambda: metric.observe(params))
        finally:
            metric.detach()

    def bind(self, model: nn.Module, example_input: Any) -> DenseCounts:
        """Record the dense model's counts (called once, on the model the run starts from)."""
        from prunecli.report.compute import compute_summary

        self.example_input = example_input
        if self.weights is None:
            self.weights = prunable_weights(model)
        params = dict(model.named_parameters())
        missing = [w for w in self.weights if w not in params]
        if missing:
            raise IterativePruningError(
                f"the model has no parameter {', '.join(missing[:3])}",
                "list parameter names of the model under weights (see 'prunecli deps --model ...')",
                "weights",
            )
        pruner = self.engine(model)
        groups: dict[str, int] = {}
        for unit in pruner.units:
            count = pruner.target.count(unit, params)
            for tensor in unit.tensors:
                groups[tensor] = count
        self.dense = DenseCounts(
            weights=float(sum(params[w].numel() for w in self.weights)),
            params=float(sum(p.numel() for p in model.parameters())),
            macs=float(sum(layer.macs for layer in compute_summary(model, example_input))),
            groups=groups,
        )
        return self.dense

    def objective(self, metric: str, model: nn.Module) -> Objective:
        """The engine objective measuring ``metric``, prepared on ``model``'s architecture."""
        shapes = tuple((n, tuple(p.shape)) for n, p in model.named_parameters())
        key = (metric, shapes)
        if key not in self._objectives:
            objective = OBJECTIVES.get(OBJECTIVE_OF[metric])()
            objective.prepare(model, self.example_input)
            self._objectives[key] = objective
        return self._objectives[key]

    def can_thin(self, model: nn.Module) -> bool:
        """Whether thinning removes what this pruner's target masks."""
        return bool(self.engine(model).target.kinds() & THINNABLE_TARGETS)

    # ------------------------------------------------------------------ pruning
    def prune(
        self,
        model: nn.Module,
        *,
        levels: Mapping[str, float] | None = None,
        goal: Budget | None = None,
        max_level: float = 0.9,
    ) -> dict[str, torch.Tensor]:
        """Masks (shaped like ``model``'s tensors now) for ``levels`` or ``goal``; not applied."""
        pruner = self.engine(model)
        self._observe(pruner, model)
        plan = _Plan(self, pruner, model, max_level)
        if goal is not None:
            return plan.for_goal(goal)
        return plan.for_levels(dict(levels or {}))

    def levels_of(self, model: nn.Module) -> dict[str, float]:
        """Each pruned tensor's level now, relative to the dense model (what a task result reports)."""
        pruner = self.engine(model)
        params = dict(model.named_parameters())
        assert self.dense is not None
        levels: dict[str, float] = {}
        for unit in pruner.units:
            live = _live_groups(pruner, unit, params)
            for tensor in unit.tensors:
                dense = self.dense.groups.get(tensor, live)
                levels[tensor] = 1.0 - live / dense if dense else 0.0
        return levels

    def reachable(self, model: nn.Module, metric: str, max_level: float) -> float:
        """The smallest ratio of ``metric`` (to dense) any allocation reaches: every unit at the cap."""
        masks = self.prune(model, levels=dict.fromkeys(self.weights or (), max_level), max_level=max_level)
        return _Plan(self, self.engine(model), model, max_level).ratio(metric, masks)

    def shares(self, model: nn.Module, metric: str) -> dict[str, float]:
        """Tensor -> its layer's share of the dense model's ``metric`` (MACs for latency budgets)."""
        from prunecli.report.compute import compute_summary

        assert self.dense is not None and self.weights is not None
        params = dict(model.named_parameters())
        if metric == "weights":
            return {w: params[w].numel() / self.dense.weights for w in self.weights}
        from prunecli.report.compute import macs_by_weight

        summary = compute_summary(model, self.example_input)
        if metric == "params":
            rows = {r.weight: r for r in summary if r.scaling == "layer"}
            return {w: rows[w].weights_volume / self.dense.params for w in self.weights if w in rows}
        macs = macs_by_weight(summary)
        return {w: macs[w] / self.dense.macs for w in self.weights if w in macs}


def _live_groups(pruner: EnginePruner, unit: Any, params: Mapping[str, torch.Tensor]) -> int:
    with torch.no_grad():
        view = pruner.target.view(unit, params)
    return int((view.detach().abs().sum(dim=1) != 0).sum())


class _Plan:
    """One pruning decision on one model: scores computed once, levels turned into masks."""

    def __init__(self, owner: LevelPruner, pruner: EnginePruner, model: nn.Module, max_level: float) -> None:
        assert owner.dense is not None
        self.owner, self.pruner, self.model, self.max_level = owner, pruner, model, max_level
        self.params = dict(model.named_parameters())
        ctx = ScoreContext(self.params, model)
        self.candidates = [
            Candidate(
                unit,
                pruner.scores(unit, ctx),
                pruner.target.sizes(unit, self.params),
                pruner.target.is_elementwise(unit),
            )
            for unit in pruner.units
        ]

    def _dense_groups(self, cand: Candidate) -> int:
        dense = self.owner.dense
        assert dense is not None
        return next((dense.groups[t] for t in cand.unit.tensors if t in dense.groups), cand.scores.numel())

    def _keep(self, cand: Candidate, level: float) -> torch.Tensor:
        """Keep vector leaving ``1 - level`` of the unit's dense groups (at least one, at most the cap)."""
        dense = self._dense_groups(cand)
        now = cand.scores.numel()
        dead = int(torch.isinf(cand.scores).sum()) if not cand.elementwise else int((cand.scores == 0).sum())
        level = min(max(level, 0.0), self.max_level)
        target_removed = int(level * dense + 1e-9)
        already = (dense - now) + dead
        remove = min(max(target_removed - already, 0) + dead, now - 1)
        return keep_all_but(cand.scores, remove)

    def masks_from_keeps(self, keeps: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        masks: dict[str, torch.Tensor] = {}
        for cand, keep in zip(self.candidates, keeps):
            masks.update(self.pruner.target.expand(cand.unit, keep, self.params))
        return masks

    def for_levels(self, levels: Mapping[str, float]) -> dict[str, torch.Tensor]:
        keeps = []
        for cand in self.candidates:
            level = max((levels.get(t, 0.0) for t in cand.unit.tensors), default=0.0)
            keeps.append(self._keep(cand, level))
        return self.masks_from_keeps(keeps)

    def _uniform(self, level: float) -> dict[str, torch.Tensor]:
        return self.masks_from_keeps([self._keep(c, level) for c in self.candidates])

    def _global(self, level: float) -> dict[str, torch.Tensor]:
        from prunecli.engine.allocation import build_allocation

        spec = {**self.owner.allocation, "max_sparsity_per_layer": self.max_level}
        allocation = build_allocation(spec)
        total = float(sum(c.costs.sum() for c in self.candidates))
        return self.masks_from_keeps(
            allocation.allocate(self.candidates, AllocationBudget(level, level, total))
        )

    def for_goal(self, goal: Budget) -> dict[str, torch.Tensor]:
        """The least pruning (by bisection on one level) whose measured ratio meets ``goal``."""
        if goal.metric not in OBJECTIVE_OF:
            raise IterativePruningError(
                f"a {goal.metric} goal cannot be split by the pruner's allocation",
                "give the task per-tensor levels instead",
            )
        allocate = self._global if self.owner.allocation["kind"] == "global" else self._uniform
        high = self.max_level
        best = allocate(high)
        if self.ratio(goal.metric, best) > goal.value:
            return best  # unreachable from here: prune as far as the cap allows
        low = 0.0
        for _ in range(20):
            mid = (low + high) / 2
            masks = allocate(mid)
            if self.ratio(goal.metric, masks) <= goal.value:
                high, best = mid, masks
            else:
                low = mid
        return best

    def ratio(self, metric: str, masks: Mapping[str, torch.Tensor]) -> float:
        """What ``metric`` would be, as a ratio to the dense model, with ``masks`` applied (and thinned)."""
        dense = self.owner.dense
        assert dense is not None
        if metric == "weights":
            names = self.owner.weights or []
            live = sum(
                float((masks[n] != 0).sum()) if n in masks else float((self.params[n] != 0).sum())
                for n in names
                if n in self.params
            )
            return live / dense.weights
        objective = self._objective(metric)
        total = getattr(objective, "total", 0.0)
        denominator = dense.params if metric == "params" else dense.macs
        return total * (1.0 - objective.removed(masks, self.params)) / denominator

    def _objective(self, metric: str) -> Objective:
        return self.owner.objective(metric, self.model)
