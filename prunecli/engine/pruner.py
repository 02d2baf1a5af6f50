"""The engine's pruner: one target, metric, allocation, schedule and objective composed.

It plugs into the compression runtime like any Distiller pruner (masks land in the same
maskers, so thinning, checkpoints and reports see no difference). Because a global allocation
needs every tensor at once, the masks of all its tensors are computed together in
:meth:`EnginePruner.prepare_masks`, which the pruning policy calls before asking for each mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunecli.engine.allocation import Allocation, Budget, Candidate
from prunecli.engine.metrics import Metric, ScoreContext
from prunecli.engine.objectives import Objective
from prunecli.engine.schedules import Schedule
from prunecli.engine.targets import CoupledTarget, NMTarget, Target, TargetError, Unit
from prunecli.pruners.base import Pruner
from prunecli.report.compute import observe_one_sample


class EngineError(ValueError):
    """A combination of axes that cannot work on this model (raised before training).

    ``key`` is the entry key at fault (for the file:line:column), ``hint`` the fix.
    """

    def __init__(self, message: str, key: str = "target", hint: str = "") -> None:
        super().__init__(message)
        self.message, self.key, self.hint = message, key, hint


@dataclass
class Admm:
    """ADMM (Zhang et al. 2018): train with ``rho/2 ||W - Z + U||^2``; Z is W+U projected on the
    sparsity constraint at every pruning event, U the running residual; masks come at the end."""

    rho: float = 1e-4

    def __post_init__(self) -> None:
        self.z: dict[str, torch.Tensor] = {}
        self.u: dict[str, torch.Tensor] = {}


class EnginePruner(Pruner):
    """Prunes ``weights`` with the given target, metric, allocation, schedule and objective."""

    def __init__(
        self,
        name: str,
        *,
        target: Target,
        metric: Metric,
        allocation: Allocation,
        schedule: Schedule,
        objective: Objective,
        fraction: float,
        weights: Sequence[str],
        model: nn.Module,
        example_input: Any = None,
        admm: Admm | None = None,
    ) -> None:
        super().__init__(name, model)
        self.target, self.metric, self.allocation = target, metric, allocation
        self.schedule, self.objective = schedule, objective
        self.fraction = float(fraction)
        self.weights = list(weights)
        self.example_input = example_input
        self.admm = admm
        # a step window decides its own events (Schedule.fires), so the policy asks every step
        self.every_steps = 1 if schedule.windowed else schedule.every_steps
        self.units: list[Unit] = []
        self._masks: dict[str, torch.Tensor] = {}
        self._resolve(model)

    # set-up ---------------------------------------------------------------------------------------
    def _resolve(self, model: nn.Module) -> None:
        """Units, and every refusal a combination deserves, before any training step."""
        params = dict(model.named_parameters())
        try:
            self.units = self.target.units(self.weights, model)
        except TargetError as exc:
            raise EngineError(
                str(exc), "target", exc.hint or "list only tensors this target applies to"
            ) from None
        for unit in self.units:
            try:
                self.target.check(unit, params)
            except TargetError as exc:
                hint = exc.hint or "leave this tensor out of weights, or pick a target that fits it"
                raise EngineError(str(exc), "target", hint) from None
        kinds = self.target.kinds()
        if len(kinds) > 1 and self.allocation.kind == "global":
            raise EngineError(
                f"allocation global ranks groups of one kind, but the weights mix {', '.join(sorted(kinds))}",
                "allocation",
                "use allocation: uniform, or one pruner entry per target kind",
            )
        if self.metric.channels_only and not self.target.output_channels:
            raise EngineError(
                f"metric {self.metric.name} scores output channels; target {self.target.kind} does not prune them",
                "metric",
                "use target: filters, rows or coupled with this metric, or a weight metric such as l1",
            )
        if self.metric.needs_groups and any(self.target.is_elementwise(u) for u in self.units):
            raise EngineError(
                f"metric {self.metric.name} compares groups; single weights ({self.target.kind}) have none",
                "metric",
                "use target: filters, channels, rows, columns, block or heads with this metric",
            )
        if self.metric.needs_forward:
            names = [t for u in self.units for t in u.tensors]
            unreached = unreached_tensors(model, names, self.example_input)
            if unreached:
                raise EngineError(
                    f"metric {self.metric.name} reads activations, but no forward pass reaches "
                    f"{', '.join(unreached[:3])}",
                    "metric",
                    "use a weight metric such as l1 for those tensors, or leave them out of weights",
                )
        self.params_names = list(dict.fromkeys(t for u in self.units for t in u.tensors))

    def attach(self, model: nn.Module) -> None:
        self.model = model
        self.metric.attach(model, self.params_names)
        self.objective.prepare(model, self.example_input)

    def detach(self) -> None:
        self.metric.detach()

    def forget_shapes(self) -> None:
        """The model was thinned: units (head layouts, coupled groups) are found again on it."""
        self.metric.reset()
        if isinstance(self.target, CoupledTarget):
            self.target.graph = None
        if self.model is not None:
            self._resolve(self.model)
        if self.admm is not None:
            self.admm.z.clear()
            self.admm.u.clear()

    # hooks the pruning policy calls ----------------------------------------------------------------
    def loss_term(self, model: nn.Module) -> torch.Tensor | None:
        terms = []
        extra = self.metric.extra_loss(model)
        if extra is not None:
            terms.append(extra)
        if self.admm is not None and self.admm.z:
            params = dict(model.named_parameters())
            for name, z in self.admm.z.items():
                w = params[name]
                terms.append(self.admm.rho / 2 * (w - z + self.admm.u[name]).pow(2).sum())
        return torch.stack(terms).sum() if terms else None

    def after_backward(self, params: Mapping[str, torch.Tensor]) -> None:
        self.metric.observe(params)

    def prepare_masks(self, params: Mapping[str, torch.Tensor], meta: dict) -> None:
        """Compute every owned tensor's mask for this pruning event."""
        self._masks = {}
        if not self.schedule.fires(meta):
            return
        progress = self.schedule.progress(meta)
        if self.admm is not None and progress < 1.0:
            self._admm_step(params)
            return
        level = self.schedule.level(progress, self.fraction)
        if isinstance(self.target, NMTarget):
            self._masks = self.nm_masks(params)
            return
        if level <= 0:
            return
        self._masks = self.masks_at(params, level)

    def set_param_mask(self, param, param_name, maskers, meta) -> None:
        mask = self._masks.pop(param_name, None)
        if mask is not None:
            maskers[param_name].mask = mask.to(param.device)

    # the composition -----------------------------------------------------------------------------
    def masks_at(self, params: Mapping[str, torch.Tensor], level: float) -> dict[str, torch.Tensor]:
        """Masks removing ``level`` of the objective: directly for weights, else the smallest
        weight level whose measured removal reaches it (bisection)."""
        ctx = ScoreContext(params, self.model)
        candidates = [
            Candidate(
                unit,
                self.scores(unit, ctx),
                self.target.sizes(unit, params),
                self.target.is_elementwise(unit),
            )
            for unit in self.units
        ]
        total = float(sum(c.costs.sum() for c in candidates))
        if self.objective.per_tensor:
            return self._allocate(candidates, level, total, params)
        low, high = 0.0, 0.999
        best = self._allocate(candidates, high, total, params)
        if self.objective.removed(best, params) < level:
            return best  # the objective cannot be met by these tensors: prune them as far as allowed
        for _ in range(16):
            mid = (low + high) / 2
            masks = self._allocate(candidates, mid, total, params)
            if self.objective.removed(masks, params) >= level:
                high, best = mid, masks
            else:
                low = mid
        return best

    def _allocate(
        self, candidates: list[Candidate], level: float, total: float, params: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        keeps = self.allocation.allocate(candidates, Budget(level, self.fraction, total))
        masks: dict[str, torch.Tensor] = {}
        for cand, keep in zip(candidates, keeps):
            masks.update(self.target.expand(cand.unit, keep, params))
        return masks

    def scores(self, unit: Unit, ctx: ScoreContext) -> torch.Tensor:
        """The metric's scores, with groups already zero ranked lowest.

        A group pruned at an earlier event has zero weights; a data-driven metric (activations,
        gradients, random) could rank it above live groups, and dropping live groups while the
        zero ones cannot come back would remove more than the schedule asks for.
        """
        scores = self.metric.score(self.target, unit, ctx).detach().float().cpu()
        if not self.target.is_elementwise(unit):
            with torch.no_grad():
                dead = self.target.view(unit, ctx.params).detach().abs().sum(dim=1).cpu() == 0
            scores = scores.masked_fill(dead, float("-inf"))
        return scores

    def nm_masks(self, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        assert isinstance(self.target, NMTarget)
        ctx = ScoreContext(params, self.model)
        masks: dict[str, torch.Tensor] = {}
        for unit in self.units:
            scores = self.metric.score(self.target, unit, ctx).detach().float().cpu()
            masks.update(self.target.expand(unit, self.target.select(unit, scores, params), params))
        return masks

    def _admm_step(self, params: Mapping[str, torch.Tensor]) -> None:
        admm = self.admm
        assert admm is not None
        with torch.no_grad():
            # ADMM's order (Boyd et al.; NNI's too): Z = project(W + U), then U = U + W - Z. The first
            # event starts the iterations at Z = project(W), U = 0.
            first = not admm.z
            weights = {n: params[n].detach().clone() for n in self.params_names}
            shifted = {n: weights[n] + admm.u.get(n, torch.zeros_like(weights[n])) for n in self.params_names}
            masks = self.masks_at(shifted, self.fraction)
            for name in self.params_names:
                admm.z[name] = shifted[name] * masks.get(name, torch.ones_like(shifted[name]))
                if first:
                    admm.u[name] = torch.zeros_like(weights[name])
                else:
                    admm.u[name] = admm.u[name] + weights[name] - admm.z[name]

    # state -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"metric": self.metric.state_dict()}
        if self.admm is not None:
            state["admm"] = {"z": dict(self.admm.z), "u": dict(self.admm.u)}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.metric.load_state_dict(state.get("metric", {}))
        if self.admm is not None and "admm" in state:
            self.admm.z = dict(state["admm"].get("z", {}))
            self.admm.u = dict(state["admm"].get("u", {}))


def unreached_tensors(model: nn.Module, names: Sequence[str], example_input: Any) -> list[str]:
    """Tensors whose module no forward pass calls (an activation metric would never see them)."""
    if example_input is None:
        return []
    owners = {name: name.rsplit(".", 1)[0] if "." in name else "" for name in names}
    seen: set[str] = set()
    handles = []
    for module_name in set(owners.values()):
        module = model.get_submodule(module_name)
        handles.append(module.register_forward_hook(lambda m, i, o, n=module_name: seen.add(n)))
    observe_one_sample(model, example_input, handles)
    return [name for name, module in owners.items() if module not in seen]
