"""``auto_dependency``: rank coupled channels jointly and mask the same indices in every coupled tensor.

A residual add (or a concatenation) makes several convolutions share one channel index space
(a :class:`prunecli.graph.ChannelGroup`). Pruning their filters independently leaves channels
that thinning cannot remove. With coupling, a Filters/Channels pruner scores each group channel
by the sum of its members' normalised structure norms (producers, role ``out``, for filters;
consumers, role ``in``, for channels), removes the lowest ``floor(fraction * size)`` group
channels, and masks those channels in every member of that role, listed in ``weights`` or not.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from prunecli.engine.metrics import RowMetric
from prunecli.engine.tensorwise import TensorwisePruner
from prunecli.pruners.criteria import lowest_k_map, num_structs_to_prune, round_prune_count
from prunecli.schedule.vocabulary import channel_group_types


class Coupler:
    """Group-level binary maps for one pruner, cached per (group, target)."""

    def __init__(
        self,
        model: nn.Module,
        graph: Any,
        example_input: Any,
        role: str,
        dim: int,
        metric: RowMetric,
        round_to: int = 1,
        prune_normalized: bool = False,
        narrow_heads: bool = False,
    ) -> None:
        self.model = model
        #: attention heads are coupled position by position (narrowed alike), not whole
        self.narrow_heads = narrow_heads
        self.round_to = round_to
        #: channels normalised by LayerNorm/GroupNorm are ranked and masked too (approximate thinning)
        self.prune_normalized = prune_normalized
        self.graph = graph
        self.example_input = example_input
        self.role = role
        self.dim = dim
        #: scores each member's slices (the pruner's mean Lp norm)
        self.metric = metric
        self._maps: dict[tuple[int, float], np.ndarray | None] = {}
        self._member_index: dict[int, dict[tuple[str, int], list[Any]]] = {}
        self._params: dict[str, nn.Parameter] | None = None

    def _graph(self) -> Any:
        if self.graph is None:
            from prunecli.graph import build_dependency_graph

            self.graph = build_dependency_graph(
                self.model,
                self.example_input,
                prune_normalized=self.prune_normalized,
                narrow_heads=self.narrow_heads,
            )
        return self.graph

    @property
    def params(self) -> dict[str, nn.Parameter]:
        if self._params is None:
            self._params = dict(self.model.named_parameters())
        return self._params

    def forget(self) -> None:
        """The model was thinned: its graph and channel numbering changed."""
        self.graph = None
        self._params = None
        self._maps.clear()
        self._member_index.clear()

    def members(self, group: Any) -> list[Any]:
        return [m for m in group.members if m.role == self.role and m.tensor in self.params]

    def _group_map(self, group: Any, target: float) -> np.ndarray | None:
        # The per-channel bookkeeping is done in numpy: these vectors are short, and a torch call's
        # fixed dispatch cost would dominate (it is paid once per member of every group).
        key = (group.index, target)
        if key not in self._maps:
            scores = np.zeros(group.size, dtype=np.float64)
            for member in self.members(group):
                tensor = self.params[member.tensor]
                if tensor.dim() < 2:
                    continue  # biases and BatchNorm affine follow the weights; they do not vote
                with torch.no_grad():
                    slices = tensor.detach().movedim(member.dim, 0).reshape(tensor.size(member.dim), -1)
                    norms = self.metric.reduce(slices).double().cpu().numpy()
                per_channel = norms.reshape(-1, member.block).sum(axis=1)
                channels, inside = _group_channels(member, per_channel.size, group.size, 1)
                per_channel = per_channel[inside]
                scale = per_channel.mean() if per_channel.size else 0.0
                if scale > 0:
                    per_channel = per_channel / scale
                np.add.at(scores, channels[inside], per_channel)
            k = round_prune_count(group.size, num_structs_to_prune(group.size, target), self.round_to)
            if k <= 0:
                self._maps[key] = None
            elif self.round_to > 1:  # exactly k channels go, so the kept count is the rounded one
                self._maps[key] = lowest_k_map(torch.from_numpy(scores), k, torch.float64).numpy()
            else:
                threshold = np.partition(scores, k - 1)[k - 1]
                self._maps[key] = (scores > threshold).astype(np.float64)
        return self._maps[key]

    def _own_members(self, group: Any, param_name: str, dim: int) -> list[Any]:
        """The members of ``group`` that are ``param_name`` along ``dim`` (indexed once per group)."""
        index = self._member_index.get(group.index)
        if index is None:
            index = self._member_index[group.index] = {}
            for member in group.members:
                index.setdefault((member.tensor, member.dim), []).append(member)
        return index.get((param_name, dim), [])

    def member_dim(self, param_name: str) -> int:
        """The dimension along which ``param_name`` carries its group's channels.

        Producers are usually sliced along dim 0; a parameter added to or concatenated with the
        channels (ViT's class token and position embedding, along their last dim) along another.
        """
        if self.role != "out":
            return self.dim
        graph = self._graph()
        for dim in range(self.params[param_name].dim()):
            if any(
                m.role == "out"
                for g in graph.groups_of(param_name, dim)
                for m in self._own_members(g, param_name, dim)
            ):
                return dim
        return 0

    def mask(self, pruner: TensorwisePruner, param_name: str, target: float) -> torch.Tensor | None:
        """The full mask of ``param_name`` for ``target``, or ``None`` when nothing is pruned."""
        param = self.params[param_name]
        dim = self.member_dim(param_name)
        binary_map = self.binary_map(pruner, param_name, target, dim)
        if binary_map is None:
            return None
        if dim == 0 or self.role != "out":
            return pruner.mask_from_keep(param_name, param, binary_map)
        shape = [1] * param.dim()
        shape[dim] = -1
        return binary_map.to(param.dtype).view(shape).expand_as(param).contiguous()

    def binary_map(
        self, pruner: TensorwisePruner, param_name: str, target: float, dim: int | None = None
    ) -> torch.Tensor | None:
        """One value per index of ``param_name`` along the coupled dimension, or ``None``.

        A tensor after a concatenation spans several groups (one slice each); every slice takes
        its group's decision, and indices in no prunable group are kept.
        """
        param = self.params[param_name]
        if dim is None:
            dim = 0 if self.role == "out" else self.dim
        groups = self._graph().groups_of(param_name, dim)
        if not groups:
            return pruner.keep(param_name, param, target)
        count = param.size(dim)
        result = np.ones(count, dtype=np.float64)
        for group in groups:
            group_map = self._group_map(group, target) if group.prunable else None
            if group_map is None:
                continue
            for member in self._own_members(group, param_name, dim):
                channels, inside = _group_channels(member, count, group.size, member.block)
                result[inside] = group_map[channels[inside]]
        if bool(result.all()):
            return None
        return torch.from_numpy(result).to(device=param.device, dtype=param.dtype)


def _group_channels(member: Any, count: int, size: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Group channel of each of ``count`` tensor indices (``block`` per channel), and which are in it."""
    channels = member.offset + np.arange(count) // block
    return channels, (channels >= 0) & (channels < size)


def _expand_names(pruner: TensorwisePruner, coupler: Coupler) -> list[str]:
    """The pruner's weights plus every coupled member of the same role."""
    names = list(pruner.params_names)
    params = coupler.params
    dim = 0 if coupler.role == "out" else coupler.dim
    for name in list(names):
        group = coupler._graph().group_of(name, dim)
        if group is None or not group.prunable:
            continue
        for member in coupler.members(group):
            if member.tensor not in names and (coupler.role == "out" or params[member.tensor].dim() >= 2):
                names.append(member.tensor)
    return names


def couple_pruners(
    pruners: list[Any],
    model: nn.Module,
    example_input: Any,
    graph: Any,
    round_to: int = 1,
    *,
    prune_normalized: bool = False,
    narrow_heads: bool = False,
) -> None:
    """Attach a :class:`Coupler` to every Filters/Channels ranked pruner (``auto_dependency``).

    ``round_to`` rounds every coupled group's kept count up to a multiple of it, for pruners that do
    not set their own ``round_to``. With ``prune_normalized`` (or a pruner's own ``prune_normalized``
    argument) the channels that a LayerNorm/GroupNorm normalises are ranked and masked too, in every
    producer of their group. ``narrow_heads`` builds the graphs with attention heads narrowed alike.
    """
    kinds = channel_group_types()
    targets = [
        p
        for p in pruners
        if isinstance(p, TensorwisePruner) and p.group_type in kinds and p.coupling is None
    ]
    if not targets:
        return
    if graph is None and example_input is None:
        raise ValueError(
            "auto_dependency needs example_input (or a dependency_graph) to find coupled channels"
        )
    graphs = {False: graph} if graph is not None and not graph.prune_normalized else {}
    if graph is not None and graph.prune_normalized:
        graphs[True] = graph
    for pruner in targets:
        role, dim = kinds[pruner.group_type].role, kinds[pruner.group_type].dim
        own = getattr(pruner.rule, "round_to", 1)
        rounding = own if own > 1 else round_to
        normalized = prune_normalized or pruner.prune_normalized
        coupler = Coupler(
            model,
            graphs.get(normalized),
            example_input,
            role,
            dim,
            pruner.ranking_metric,
            rounding,
            normalized,
            narrow_heads,
        )
        graphs[normalized] = coupler._graph()
        pruner.coupling = coupler
        pruner.params_names = _expand_names(pruner, coupler)
        _check_group_widths(pruner, coupler)


def _check_group_widths(pruner: TensorwisePruner, coupler: Coupler) -> None:
    """A coupled group narrower than ``round_to`` cannot be rounded: refuse it by name."""
    if coupler.round_to <= 1:
        return
    dim = 0 if coupler.role == "out" else coupler.dim
    for name in pruner.params_names:
        group = coupler._graph().group_of(name, dim)
        if group is not None and group.prunable and group.size < coupler.round_to:
            raise ValueError(
                f"round_to {coupler.round_to} is larger than the {group.size} channels {name} shares "
                "with its coupled layers"
            )
