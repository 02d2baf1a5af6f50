"""Structure pruners that rank filters/channels/rows/blocks and remove the lowest-ranked ones."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from prunecli.pruners.agp import AgpMixin
from prunecli.pruners.base import Pruner
from prunecli.pruners.criteria import expand_binary_map, round_prune_count, structure_binary_map
from prunecli.pruners.stats import ActivationStats, GradientStats

#: Distiller ranks the first five; Cols (a matrix's stored rows) and 2D (kernels) are extensions.
LP_GROUP_TYPES = ("3D", "Filters", "Channels", "Rows", "Blocks", "Cols", "2D")
FILTER_GROUP_TYPES = ("3D", "Filters")
#: group type -> dimension whose kept count ``round_to`` rounds (filters: outputs, channels: inputs)
ROUNDED_DIMS = {"3D": 0, "Filters": 0, "Channels": 1}


def check_round_to(round_to: int, group_type: str, widths: Mapping[str, int]) -> int:
    """``round_to`` must be a positive integer, apply to filters/channels, and fit every layer it rounds."""
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise ValueError(f"round_to must be an integer >= 1, got {round_to!r}")
    if round_to > 1 and group_type not in ROUNDED_DIMS:
        raise ValueError(f"round_to applies to group_type {'/'.join(ROUNDED_DIMS)}, not {group_type}")
    narrow = {name: width for name, width in widths.items() if width < round_to}
    if narrow:
        name, width = next(iter(narrow.items()))
        raise ValueError(
            f"round_to {round_to} is larger than {name}'s {width} {group_type.lower()}"
            + (f" (and {len(narrow) - 1} more layers)" if len(narrow) > 1 else "")
        )
    return round_to


class RankedStructurePruner(Pruner):
    """Distiller's ``_RankedStructureParameterPruner``: ranking, Leader groups, coupled groups."""

    group_types: tuple[str, ...] = LP_GROUP_TYPES

    def __init__(
        self,
        name: str,
        group_type: str,
        desired_sparsity: float,
        weights: Sequence[str] | str,
        group_dependency: str | None = None,
        model: nn.Module | None = None,
        round_to: int = 1,
    ) -> None:
        super().__init__(name, model)
        if group_type not in self.group_types:
            raise ValueError(
                f"group_type {group_type!r} is not supported here; use one of {list(self.group_types)}"
            )
        if group_dependency not in (None, "Leader"):
            raise ValueError(f"group_dependency must be 'Leader' or absent, got {group_dependency!r}")
        self.group_type = group_type
        self.desired_sparsity = desired_sparsity
        self.params_names = [weights] if isinstance(weights, str) else list(weights)
        if not self.params_names:
            raise ValueError("weights must list at least one parameter")
        self.group_dependency = group_dependency
        self.block_shape: Sequence[int] | None = None
        self.leader_binary_map: torch.Tensor | None = None
        self.last_target_sparsity: float | None = None
        #: set by the runtime when ``auto_dependency`` couples channels across a dependency graph
        self.coupling: Any = None
        #: the schedule's ``prune_normalized`` argument: couple this pruner's channels across their
        #: groups, channels normalised by LayerNorm/GroupNorm included (set by the schedule builder)
        self.prune_normalized = False
        #: kept filter/channel counts are rounded up to a multiple of this (1: no rounding)
        self.round_to = check_round_to(round_to, group_type, self._widths(model, group_type))

    def _widths(self, model: nn.Module | None, group_type: str) -> dict[str, int]:
        dim = ROUNDED_DIMS.get(group_type)
        if model is None or dim is None:
            return {}
        params = dict(model.named_parameters())
        return {n: params[n].size(dim) for n in self.params_names if n in params and params[n].dim() > dim}

    def leader(self) -> str:
        return self.params_names[0]

    def fraction_to_prune(self, param_name: str, meta: dict) -> float:
        return self.desired_sparsity

    def set_param_mask(self, param, param_name, maskers, meta=None) -> None:
        if param_name not in self.params_names:
            return
        target = self.fraction_to_prune(param_name, meta)
        self.prune_to_target_sparsity(
            param, param_name, maskers, target, (meta or {}).get("model", self.model)
        )

    def prune_to_target_sparsity(self, param, param_name, maskers, target: float, model) -> None:
        if param_name not in self.params_names or target == 0:
            return
        if self.coupling is not None:
            mask = self.coupling.mask(self, param_name, target)
            if mask is not None:
                maskers[param_name].mask = self._combined(maskers[param_name].mask, mask)
            return
        if self.group_dependency == "Leader":
            if target != self.last_target_sparsity or self.leader_binary_map is None:
                leader = dict(model.named_parameters())[self.leader()]
                self.leader_binary_map = self.rank(target, leader, self.leader())
                self.last_target_sparsity = target if self.leader_binary_map is not None else None
            binary_map = self.leader_binary_map
        else:
            binary_map = self.rank(target, param, param_name)
        if binary_map is None:
            return
        maskers[param_name].mask = self.mask_from_map(param, binary_map)

    def _combined(self, existing: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
        """With ``prune_normalized`` a tensor can be in two pruners' groups (an MLP's output rows
        carry the embedding, its columns the hidden layer): each keeps the other's zeros."""
        if not self.prune_normalized or existing is None or existing.shape != mask.shape:
            return mask
        return existing.to(mask.dtype) * mask

    def rank(self, fraction: float, param: torch.Tensor, param_name: str) -> torch.Tensor | None:
        """One value per structure (1 kept, 0 pruned), or ``None`` when nothing can be pruned."""
        raise NotImplementedError

    def mask_from_map(self, param: torch.Tensor, binary_map: torch.Tensor) -> torch.Tensor:
        return expand_binary_map(param, self.group_type, binary_map, self.block_shape)

    def forget_shapes(self) -> None:
        self.leader_binary_map = None
        self.last_target_sparsity = None
        if self.coupling is not None:
            self.coupling.forget()

    def state_dict(self) -> dict[str, Any]:
        return {
            "leader_binary_map": self.leader_binary_map,
            "last_target_sparsity": self.last_target_sparsity,
        }


class LpRankedStructureParameterPruner(RankedStructurePruner):
    """Rank by mean Lp norm of each structure (Blocks: plain Lp norm)."""

    p = 1

    def __init__(
        self,
        name: str,
        group_type: str,
        desired_sparsity: float,
        weights: Sequence[str] | str,
        group_dependency: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        noise: float = 0.0,
        group_size: int = 1,
        model: nn.Module | None = None,
        round_to: int = 1,
    ) -> None:
        super().__init__(name, group_type, desired_sparsity, weights, group_dependency, model, round_to)
        self.noise = noise
        self.group_size = group_size
        if group_type == "Blocks":
            if not kwargs or "block_shape" not in kwargs:
                raise ValueError("group_type Blocks needs kwargs: {block_shape: [repetitions, depth, 1, 1]}")
            self.block_shape = list(kwargs["block_shape"])

    def rank(self, fraction, param, param_name):
        return structure_binary_map(
            param,
            self.group_type,
            fraction,
            self.p,
            self.block_shape,
            self.group_size,
            self.noise,
            round_to=self.round_to,
        )


class L1RankedStructureParameterPruner(LpRankedStructureParameterPruner):
    p = 1


class L2RankedStructureParameterPruner(LpRankedStructureParameterPruner):
    p = 2


class RandomLevelStructureParameterPruner(L1RankedStructureParameterPruner):
    """L1 ranking at a fresh ``uniform(lo, hi)`` level on every call (DropFilter-like)."""

    def __init__(
        self,
        name: str,
        group_type: str,
        sparsity_range: Sequence[float],
        weights: Sequence[str] | str,
        group_dependency: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        model: nn.Module | None = None,
    ) -> None:
        super().__init__(name, group_type, 0, weights, group_dependency, kwargs, model=model)
        if len(sparsity_range) != 2 or not 0 <= sparsity_range[0] <= sparsity_range[1] <= 1:
            raise ValueError(f"sparsity_range must be [low, high] within [0, 1], got {sparsity_range!r}")
        self.sparsity_range = list(sparsity_range)

    def fraction_to_prune(self, param_name, meta):
        return random.uniform(self.sparsity_range[0], self.sparsity_range[1])


class FilterScorePruner(RankedStructurePruner):
    """Filters ranked by a per-filter score: the ``int(fraction * n)`` highest-scoring are pruned."""

    group_types = FILTER_GROUP_TYPES

    def scores(self, param: torch.Tensor, param_name: str) -> torch.Tensor | None:
        raise NotImplementedError

    def rank(self, fraction, param, param_name):
        if param.dim() != 4:
            raise ValueError(f"{type(self).__name__} only prunes 4D convolution weights ({param_name})")
        n = param.size(0)
        k = round_prune_count(n, int(fraction * n), self.round_to)
        if k == 0:
            return None
        scores = self.scores(param, param_name)
        if scores is None:
            return None
        order = torch.argsort(scores.detach().float().cpu(), stable=True)
        binary_map = torch.zeros(n, dtype=param.dtype)
        binary_map[order[: n - k]] = 1
        return binary_map.to(param.device)


class StatsRankedFilterPruner(FilterScorePruner):
    """Ranks filters by statistics that hooks on the model gather during training, between prunes.

    The statistics travel with the pruner's state so a resumed run ranks exactly as before.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats = self.make_stats()

    def make_stats(self) -> Any:
        raise NotImplementedError

    def attach(self, model: nn.Module) -> None:
        self.stats.attach(model, self.params_names)

    def detach(self) -> None:
        self.stats.detach()

    def forget_shapes(self) -> None:
        super().forget_shapes()
        self.stats.reset()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "stats": self.stats.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        state = dict(state)
        self.stats.load_state_dict(state.pop("stats", {}))
        super().load_state_dict(state)


class ActivationRankedFilterPruner(StatsRankedFilterPruner):
    """Ranks filters by statistics of ``relu(conv output)`` gathered with a forward hook during training.

    Distiller reads the same statistic from a ReLU module found by name; here the hook sits on the
    convolution that owns the weight and applies the ReLU itself, so no extra pass or naming
    convention is needed. As in Distiller the filters with the *largest* statistic are removed.
    """

    statistic = "apoz"

    def make_stats(self) -> ActivationStats:
        return ActivationStats(self.statistic)

    def scores(self, param, param_name):
        values = self.stats.take(param_name)
        self.pending = self.pending or values is None
        return values


class ActivationAPoZRankedFilterPruner(ActivationRankedFilterPruner):
    """Average Percentage of Zeros per channel (Hu et al. 2016)."""

    statistic = "apoz"


class ActivationMeanRankedFilterPruner(ActivationRankedFilterPruner):
    """Mean activation per channel (Molchanov et al. 2017)."""

    statistic = "mean"


class GradientRankedFilterPruner(StatsRankedFilterPruner):
    """Taylor ranking: ``sum(grad * w)`` per filter, summed over the backward passes since the last prune.

    Filters with the lowest sum are removed (Distiller sorts this score from high to low).
    """

    def make_stats(self) -> GradientStats:
        return GradientStats()

    def scores(self, param, param_name):
        values = self.stats.take(param_name)
        if values is None and param.grad is not None:
            values = (param.grad * param).detach().reshape(param.size(0), -1).sum(dim=1)
        self.pending = self.pending or values is None
        return None if values is None else -values


class RandomRankedFilterPruner(FilterScorePruner):
    """A random choice of filters: the sanity baseline."""

    def scores(self, param, param_name):
        return torch.rand(param.size(0))


class BernoulliFilterPruner(FilterScorePruner):
    """DropFilter: each filter kept with probability ``1 - fraction``; the mask is scaled by ``n / kept``."""

    def rank(self, fraction, param, param_name):
        if param.dim() != 4:
            raise ValueError(f"BernoulliFilterPruner only prunes 4D convolution weights ({param_name})")
        return torch.bernoulli(torch.full((param.size(0),), 1.0 - fraction)).to(param.device, param.dtype)

    def mask_from_map(self, param, binary_map):
        mask = expand_binary_map(param, "Filters", binary_map)
        kept = binary_map.sum()
        if kept > 0:  # Distiller divides by zero here when every filter is dropped
            mask.div_(kept / binary_map.numel())
        return mask


def _agp_variant(base: type[RankedStructurePruner]) -> type[RankedStructurePruner]:
    """The ``_AGP`` form of a one-shot ranked pruner: same ranking, AGP target instead of desired_sparsity.

    Its arguments are declared once, in :mod:`prunecli.schedule.catalog`; the base class's own
    options (``kwargs``, ``noise``, ...) pass through unchanged.
    """

    def __init__(
        self,
        name: str,
        initial_sparsity: float,
        final_sparsity: float,
        group_type: str,
        weights: Sequence[str] | str,
        group_dependency: str | None = None,
        model: nn.Module | None = None,
        **options: Any,
    ) -> None:
        base.__init__(self, name, group_type, 0, weights, group_dependency, model=model, **options)
        self._init_agp(initial_sparsity, final_sparsity)

    def fraction_to_prune(self, param_name, meta):
        return self.agp_target(meta)

    namespace = {
        "__init__": __init__,
        "fraction_to_prune": fraction_to_prune,
        "__doc__": f"{base.__name__} driven by the AGP sparsity timeline.",
    }
    return type(f"{base.__name__}_AGP", (AgpMixin, base), namespace)


L1RankedStructureParameterPruner_AGP = _agp_variant(L1RankedStructureParameterPruner)
L2RankedStructureParameterPruner_AGP = _agp_variant(L2RankedStructureParameterPruner)
ActivationAPoZRankedFilterPruner_AGP = _agp_variant(ActivationAPoZRankedFilterPruner)
ActivationMeanRankedFilterPruner_AGP = _agp_variant(ActivationMeanRankedFilterPruner)
GradientRankedFilterPruner_AGP = _agp_variant(GradientRankedFilterPruner)
RandomRankedFilterPruner_AGP = _agp_variant(RandomRankedFilterPruner)
BernoulliFilterPruner_AGP = _agp_variant(BernoulliFilterPruner)
