"""Allocation: *how much of each unit*. Given every unit's group scores and costs and the level the
schedule asks for now, decide which groups each unit keeps.

Uniform gives every unit the same fraction; global ranks all groups of all units together
(after normalising each unit's scores) and never empties a unit; sensitivity reads per-tensor
levels from the CSV ``prunecli sensitivity`` writes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from prunecli.engine.registry import Registry
from prunecli.engine.targets import Unit
from prunecli.pruners.criteria import e_greedy_noise, lowest_k_map, num_structs_to_prune, round_prune_count


@dataclass
class Candidate:
    """One unit as the allocation sees it."""

    unit: Unit
    scores: torch.Tensor  # [groups], higher is kept
    costs: torch.Tensor  # [groups], weights each group holds
    elementwise: bool  # Distiller's level semantics: every score tied with the cut goes too


def prune_lowest(candidate: Candidate, fraction: float) -> torch.Tensor:
    """Keep vector removing ``fraction`` of the unit's groups, lowest scores first.

    Elements follow Distiller's level rule (``k = int(fraction * n)``; every score at or below the
    k-th smallest goes); structures remove exactly ``floor(fraction * n)`` with ties broken by
    position, and never all of them.
    """
    if candidate.elementwise:
        return level_keep(candidate.scores, fraction)
    k = num_structs_to_prune(candidate.scores.numel(), fraction)
    return keep_all_but(candidate.scores, k)


def level_keep(scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """Distiller's level rule: ``k = int(fraction * n)``; every score at or below the k-th smallest goes."""
    n = scores.numel()
    k = int(fraction * n)
    if k <= 0:
        return torch.ones(n)
    cut = torch.topk(scores.reshape(-1), k, largest=False, sorted=True).values[-1]
    return (scores > cut).float()


def keep_all_but(scores: torch.Tensor, k: int) -> torch.Tensor:
    keep = torch.ones(scores.numel())
    if k > 0:
        order = torch.argsort(scores.detach().float().cpu(), stable=True)
        keep[order[:k]] = 0
    return keep


@dataclass(frozen=True)
class Budget:
    """What the schedule asks for now, in weights."""

    level: float  # fraction of the weights to remove now
    final: float  # fraction at the end of the schedule
    total: float  # weights of all candidates together


class Allocation:
    kind: str = ""

    def allocate(self, candidates: Sequence[Candidate], budget: Budget) -> list[torch.Tensor]:
        raise NotImplementedError


ALLOCATIONS: Registry[Callable[..., Allocation]] = Registry("allocation")


@ALLOCATIONS.register("uniform")
class Uniform(Allocation):
    """The same fraction of every unit."""

    kind = "uniform"

    def allocate(self, candidates, budget):
        return [prune_lowest(c, budget.level) for c in candidates]


#: how one unit's scores are scaled before the global ranking (over its finite scores: groups
#: already pruned score -inf and stay first)
SCALES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "none": lambda s: torch.ones(()),
    "mean": lambda s: s.abs().mean(),
    "max": lambda s: s.abs().max(),
    "sum": lambda s: s.abs().sum(),
    "l2": lambda s: s.norm(),
}


def normalise(scores: torch.Tensor, how: str) -> torch.Tensor:
    finite = scores[torch.isfinite(scores)]
    if finite.numel() == 0:
        return scores
    return scores / SCALES[how](finite).clamp_min(1e-12)


@ALLOCATIONS.register("global")
class Global(Allocation):
    """Rank every group of every unit together, lowest normalised score first.

    ``normalize`` makes scores of differently sized tensors comparable (``none``, ``mean``,
    ``max``, ``sum``, ``l2`` of each unit's scores); ``max_sparsity_per_layer`` caps the fraction
    taken from one unit, and at least one group of every unit always stays;
    ``min_sparsity_per_layer`` takes that fraction of every unit's lowest groups first (never
    more than the level asks for now), and the ranking spends the rest of the budget.
    ``rounding``: ``up`` removes groups until at least ``level`` of the weights is gone; ``down``
    removes as many as fit in ``floor(level * weights)`` (NNI's count for a global group).
    """

    kind = "global"

    def __init__(
        self,
        normalize: str = "mean",
        max_sparsity_per_layer: float = 1.0,
        min_sparsity_per_layer: float = 0.0,
        rounding: str = "up",
    ) -> None:
        if normalize not in SCALES:
            raise ValueError(f"normalize must be one of {sorted(SCALES)}, got {normalize!r}")
        if not 0 < max_sparsity_per_layer <= 1:
            raise ValueError(f"max_sparsity_per_layer must be in (0, 1], got {max_sparsity_per_layer}")
        if not 0 <= min_sparsity_per_layer <= max_sparsity_per_layer:
            raise ValueError(
                f"min_sparsity_per_layer must be in [0, max_sparsity_per_layer], got {min_sparsity_per_layer}"
            )
        if rounding not in ("up", "down"):
            raise ValueError(f"rounding must be 'up' or 'down', got {rounding!r}")
        self.normalize = normalize
        self.cap = float(max_sparsity_per_layer)
        self.floor = float(min_sparsity_per_layer)
        self.down = rounding == "down"

    def allocate(self, candidates, budget):
        wanted = budget.level * budget.total
        if self.down:
            wanted = math.floor(wanted)
        scores = [normalise(c.scores.float(), self.normalize) for c in candidates]
        limits = [min(math.floor(self.cap * s.numel()), s.numel() - 1) for s in scores]
        orders = [torch.argsort(s, stable=True) for s in scores]
        floor = min(self.floor, budget.level)
        taken = [min(math.floor(floor * s.numel()), limit) for s, limit in zip(scores, limits)]
        saturated: set[int] = set()
        # Greedy by score with per-unit caps: take the globally lowest groups; a unit reaching
        # its cap is frozen and the rest of the budget goes to the others.
        for _ in range(len(candidates) + 1):
            open_units = [i for i in range(len(candidates)) if i not in saturated]
            spent = sum(
                float(candidates[i].costs[orders[i][: taken[i]]].sum()) for i in range(len(candidates))
            )
            if not open_units or spent >= wanted:
                break
            pool_scores, pool_costs, pool_owner = [], [], []
            for i in open_units:
                rest = orders[i][taken[i] : limits[i]]
                pool_scores.append(scores[i][rest])
                pool_costs.append(candidates[i].costs[rest])
                pool_owner.append(torch.full((rest.numel(),), i))
            if not pool_scores or sum(p.numel() for p in pool_scores) == 0:
                break
            all_scores = torch.cat(pool_scores)
            order = torch.argsort(all_scores, stable=True)
            cum = torch.cumsum(torch.cat(pool_costs)[order].double(), 0)
            need = wanted - spent
            at = torch.searchsorted(cum, torch.tensor([need], dtype=torch.float64), right=self.down)
            count = int(at.item()) + (0 if self.down else 1)  # down: the groups that fit; up: one more
            count = min(count, order.numel())
            owners = torch.cat(pool_owner)[order[:count]]
            grew = False
            for i in open_units:
                extra = int((owners == i).sum())
                taken[i] += extra
                grew = grew or extra > 0
                if taken[i] >= limits[i]:
                    saturated.add(i)
            if not grew:
                break
        keeps = []
        for i, cand in enumerate(candidates):
            keep = torch.ones(cand.scores.numel())
            keep[orders[i][: taken[i]]] = 0
            keeps.append(keep)
        return keeps


@ALLOCATIONS.register("sensitivity")
class Sensitivity(Allocation):
    """Per-tensor levels from a sensitivity analysis CSV (``prunecli sensitivity`` writes it).

    Each tensor's final fraction is the largest sparsity whose top-1 stays within ``max_drop``
    (a fraction, e.g. 0.01) of the dense top-1; the schedule ramps every tensor to its own final
    fraction in proportion (``level / objective level``).
    """

    kind = "sensitivity"

    def __init__(self, csv: str, max_drop: float = 0.01) -> None:
        from prunecli.report.sensitivity import read_csv

        self.csv = csv
        self.max_drop = float(max_drop)
        self.levels = levels_from_points(read_csv(csv), self.max_drop)

    def allocate(self, candidates, budget):
        ramp = budget.level / budget.final if budget.final > 0 else 1.0
        keeps = []
        for cand in candidates:
            final = max((self.levels.get(t, 0.0) for t in cand.unit.tensors), default=0.0)
            keeps.append(prune_lowest(cand, final * ramp))
        return keeps


def levels_from_points(points: Sequence[Any], max_drop: float) -> dict[str, float]:
    """Tensor -> largest sparsity whose top-1 is within ``max_drop`` of its sparsity-0 top-1."""
    by_tensor: dict[str, list[Any]] = {}
    for point in points:
        by_tensor.setdefault(point.parameter, []).append(point)
    levels = {}
    for name, rows in by_tensor.items():
        rows.sort(key=lambda r: r.sparsity)
        base = rows[0].top1
        best = 0.0
        for row in rows:
            if base - row.top1 > max_drop + 1e-12:
                break
            best = row.sparsity
        levels[name] = min(best, 0.999)
    return levels


def build_allocation(spec: Mapping[str, Any]) -> Allocation:
    options = {k: v for k, v in spec.items() if k != "kind"}
    return ALLOCATIONS.get(str(spec["kind"]))(**options)


# ------------------------------------------------------------------------------------------------
# Per-tensor rules: how Distiller's own pruners turn one tensor's group scores and the amount their
# per-tensor schedule asks for (:class:`~prunecli.engine.schedules.TensorSchedule`) into a keep
# vector.


class TensorRule:
    """One tensor's decision: ``keep(scores, amount, current, count)`` -> keep vector, or ``None``
    to leave the tensor's mask as it is.

    ``scores`` is a call returning the ``count`` group scores (higher is kept), or ``None`` when
    the metric has nothing to rank by yet: a rule calls it only once it knows it prunes something,
    because Distiller's data-driven rankers draw random numbers and consume their statistics only
    then. ``current`` is the tensor's keep vector before this event, given to rules that
    ``needs_current``.
    """

    needs_current = False

    def keep(
        self,
        scores: Callable[[], torch.Tensor | None],
        amount: Any,
        current: torch.Tensor | None,
        count: int,
    ) -> torch.Tensor | None:
        raise NotImplementedError

    def mask_values(self, keep: torch.Tensor) -> torch.Tensor:
        """The values the mask gives each group from a 0/1 keep vector (the vector itself)."""
        return keep


class LevelRule(TensorRule):
    """Distiller's element level: ``k = int(level * n)``; every score at or below the k-th smallest goes."""

    def keep(self, scores, amount, current, count):
        return level_keep(scores(), amount)


class ThresholdRule(TensorRule):
    """Keep the groups scoring strictly above the threshold."""

    def keep(self, scores, amount, current, count):
        return torch.gt(scores(), amount)


class SpliceRule(TensorRule):
    """Dynamic Network Surgery: remove below ``low``, splice back at or above ``high``, keep the
    previous decision in between."""

    needs_current = True

    def keep(self, scores, amount, current, count):
        low, high = amount
        values = scores()
        kept = torch.where(values < low, torch.zeros_like(current), current)
        return torch.where(values >= high, torch.ones_like(current), kept)


class RankRule(TensorRule):
    """Distiller's ranked structures: remove the ``floor(fraction * n)`` lowest-scoring groups.

    ``group_size`` rounds that count down to a multiple of it, and never all groups are removed
    unless the fraction is exactly 1 (``count: structures``); Distiller's blocks count
    ``int(fraction * n)`` instead (``count: int``). Every group tied with the cut goes too, as in
    Distiller, except that a tie spanning all groups removes exactly the count. ``round_to``
    rounds the *kept* count up to a multiple of it, removing exactly the lowest-ranked groups.
    ``noise`` is Distiller's e-greedy exploration: with that probability the scores are multiplied
    by standard normal noise first.
    """

    def __init__(self, group_size: int = 1, round_to: int = 1, noise: float = 0.0, count: str = "structures"):
        if count not in ("structures", "int"):
            raise ValueError(f"count must be 'structures' or 'int', got {count!r}")
        self.group_size, self.round_to, self.noise = group_size, round_to, noise
        self.by_int = count == "int"

    def removed(self, n: int, fraction: float) -> int:
        if self.by_int:
            return int(fraction * n)
        return round_prune_count(n, num_structs_to_prune(n, fraction, self.group_size), self.round_to)

    def keep(self, scores, amount, current, count):
        k = self.removed(count, amount)
        if k <= 0 or amount <= 0:
            return None
        values = e_greedy_noise(scores(), self.noise)
        if self.round_to > 1 and not self.by_int:
            return lowest_k_map(values, k, values.dtype)
        bottom = torch.topk(values, k, largest=False, sorted=True)
        keep = values.gt(bottom.values[-1]).to(values.dtype)
        if k < count and not keep.any():
            # every score ties with the cut: Distiller would remove all groups; remove exactly k
            keep = torch.ones_like(keep)
            keep[bottom.indices] = 0
        return keep


class ScoreRankRule(TensorRule):
    """Distiller's data-driven filter rankers: keep the ``n - int(fraction * n)`` highest scores
    (ties kept in order of position), the kept count rounded up to a multiple of ``round_to``.

    ``None`` (no statistics yet) from the scores leaves the mask alone.
    """

    def __init__(self, round_to: int = 1) -> None:
        self.round_to = round_to

    def keep(self, scores, amount, current, count):
        k = round_prune_count(count, int(amount * count), self.round_to)
        if k == 0:
            return None
        values = scores()
        if values is None:
            return None
        order = torch.argsort(-values.detach().float().cpu(), stable=True)
        keep = torch.zeros(count)
        keep[order[: count - k]] = 1
        return keep


class BernoulliRule(TensorRule):
    """DropFilter: each group kept with probability ``1 - fraction`` (no scores); the mask scales the
    kept ones by ``n / kept`` so the layer's expected output is unchanged (whoever chose them: a
    Leader group or a coupled channel group too)."""

    def keep(self, scores, amount, current, count):
        return torch.bernoulli(torch.full((count,), 1.0 - amount))

    def mask_values(self, keep):
        kept = keep.sum()
        if kept > 0:  # Distiller divides by zero here when every group is dropped
            return keep / (kept / keep.numel())
        return keep


#: the per-tensor rules compositions name (the ranked ones take options, so compositions build them)
TENSOR_RULES: dict[str, Callable[[], TensorRule]] = {
    "level": LevelRule,
    "threshold": ThresholdRule,
    "splice": SpliceRule,
}
