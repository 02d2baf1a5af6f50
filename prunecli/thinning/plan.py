"""Which channels can go: decided from the current weights so the function stays identical.

A channel (one component of the channel flow, shared by many tensors) is removed only when every
weight that reads it gets nothing from it:

* ``filters``: the channel's *value* reaching each reader is identically zero (zero filters and
  biases, propagated through BatchNorm, activations with f(0) = 0, residual adds, products...);
* ``channels``: each reader's *weight slice* for it is zero (zero input channels / columns);
  the producers' outputs are then unused and go too;
* ``both``: either holds, reader by reader.

With ``rule="distiller"`` a filter counts as zero when its weights are (its bias and the BatchNorm
shift after it are removed with it, as Distiller does): the function then changes by those
constant shifts, and verification compares against the model with them zeroed.

Channels touching anything the graph walk could not follow (model input/output, LayerNorm
statistics, channel shuffles, unknown ops) are never removed, and every group keeps at least
one channel. With a graph built with ``prune_normalized`` channels normalised by a LayerNorm or
GroupNorm are removable too, when their value is zero and so are the norm's scale and shift: the
norm's statistics then change (``Plan.normalized_groups``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from prunecli.errors import ThinningError
from prunecli.graph.model import ChannelGroup, DependencyGraph
from prunecli.graph.zeros import DepthwiseRule, NormRule, ProducerRule, SliceZeros, evaluate
from prunecli.thinning.recipe import tensor_by_name

MODES = ("both", "filters", "channels")
#: ``exact``: keep the function; ``distiller``: a filter counts as zero when its weights are, as in
#: Distiller (its bias and the BatchNorm shift after it are dropped with it)
RULES = ("exact", "distiller")


@dataclass
class Plan:
    """Kept indices per (tensor, dim) and what was removed per group."""

    keep: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    removed: np.ndarray | None = None  # per channel component
    removed_per_group: dict[int, int] = field(default_factory=dict)
    modules: set[str] = field(default_factory=set)
    attributes: dict[str, dict[str, int]] = field(default_factory=dict)  # size attributes to set
    #: groups whose removed channels pass through a norm (``prune_normalized``): the function changes
    normalized_groups: list[int] = field(default_factory=list)
    #: groups whose every channel was zero: one channel is kept so the network stays connected
    emptied: list[ChannelGroup] = field(default_factory=list)
    #: query rows to rescale where attention heads were narrowed (``ThinningRecipe.scales``)
    scales: dict[str, list[tuple[int, int, int, float]]] = field(default_factory=dict)

    @property
    def removed_channels(self) -> int:
        return sum(self.removed_per_group.values())


def plan_removal(
    model: nn.Module, graph: DependencyGraph, mode: str = "both", rule: str = "exact", round_to: int = 1
) -> Plan:
    """``round_to`` > 1 keeps back removable channels so every group's kept count is a multiple of it."""
    if mode not in MODES:
        raise ThinningError(f"unknown thinning mode '{mode}'", hint=f"use one of {', '.join(MODES)}")
    if rule not in RULES:
        raise ThinningError(f"unknown thinning rule '{rule}'", hint=f"use one of {', '.join(RULES)}")
    flow = graph.flow
    comp = flow.component

    zeros_of = SliceZeros(lambda name: tensor_by_name(model, name))
    if rule == "distiller":
        zeros_of = _ignoring_shifts(zeros_of, flow.zero_rules)
    zero = evaluate(flow.zero_rules, flow.num_ids, zeros_of)
    removable = flow.group_of_component >= 0
    for c in flow.blocked:
        removable[c] = False
    unprunable = np.array([not g.prunable for g in graph.groups] + [True])
    removable &= ~unprunable[flow.group_of_component]
    for reader in flow.readers:
        ids = reader.ids
        allowed = np.zeros(ids.shape[0], dtype=bool)
        if mode in ("filters", "both"):
            allowed |= zero[ids].all(axis=1)
        if mode in ("channels", "both") and reader.tensor is not None:
            allowed |= zeros_of(reader.tensor, reader.dim)
        removable[comp[ids[~allowed]].ravel()] = False
    # every group keeps at least one channel
    plan = Plan()
    order = np.argsort(flow.group_of_component, kind="stable")
    sorted_groups = flow.group_of_component[order]
    for group in graph.groups:
        lo, hi = np.searchsorted(sorted_groups, [group.index, group.index + 1])
        comps = order[lo:hi]
        gone = removable[comps]
        if len(comps) and gone.all():
            removable[comps[0]] = False
            gone = removable[comps]
            plan.emptied.append(group)
        if round_to > 1 and gone.any():
            _round_kept(model, graph, group, comps, removable, round_to)
            gone = removable[comps]
        if gone.any():
            plan.removed_per_group[group.index] = int(gone.sum())
            if group.normalized:
                plan.normalized_groups.append(group.index)
    plan.removed = removable
    for rec in flow.records:
        drop = removable[comp[rec.ids]]
        if drop.any():
            plan.keep[(rec.tensor, rec.dim)] = np.flatnonzero(~drop).tolist()
            if rec.module:
                plan.modules.add(rec.module)
            else:
                plan.modules.add(rec.tensor.rpartition(".")[0])
    for attr in flow.size_attributes:
        drop = removable[comp[attr.ids]]
        if drop.any():
            plan.attributes.setdefault(attr.module, {})[attr.attr] = int((~drop).sum())
    for scale in flow.query_scales:
        kept = int((~removable[comp[scale.ids]]).sum())
        if kept < len(scale.ids):
            factor = math.sqrt(kept / len(scale.ids))
            for name in scale.tensors:
                plan.scales.setdefault(name, []).append((0, scale.parts, scale.part, factor))
    return plan


def _round_kept(
    model: nn.Module, graph: DependencyGraph, group, comps: np.ndarray, removable: np.ndarray, round_to: int
) -> None:
    """Give back the highest-ranked removable channels until the kept count is a multiple of ``round_to``.

    A channel's rank is the summed absolute value of every parameter slice that carries it (its filters
    and the weights reading it); ties go to the lower channel index. Keeping a removable channel never
    changes the function, so the verification still holds.
    """
    if len(comps) < round_to:
        member = group.members[0].tensor if group.members else f"group {group.index}"
        raise ThinningError(
            f"round_to {round_to} is larger than the {len(comps)} channels of the group of {member}",
            hint=f"pass a --round-to of at most {len(comps)}, or 1 to turn rounding off",
        )
    gone = comps[removable[comps]]
    kept = len(comps) - len(gone)
    extra = min(-kept % round_to, len(gone))
    if extra == 0:
        return
    score = _channel_scores(model, graph, set(gone.tolist()))
    ranked = sorted(gone.tolist(), key=lambda c: (-score.get(c, 0.0), c))
    removable[ranked[:extra]] = False


def _channel_scores(model: nn.Module, graph: DependencyGraph, wanted: set[int]) -> dict[int, float]:
    comp = graph.flow.component
    score: dict[int, float] = {}
    for rec in graph.flow.records:
        comps = comp[rec.ids]
        hit = [i for i, c in enumerate(comps.tolist()) if c in wanted]
        if not hit:
            continue
        t = tensor_by_name(model, rec.tensor).detach()
        if t.dim() == 0:
            continue
        slices = t.abs().transpose(0, rec.dim).reshape(t.size(rec.dim), -1).sum(dim=1).double()
        for i in hit:
            score[int(comps[i])] = score.get(int(comps[i]), 0.0) + float(slices[i])
    return score


def _ignoring_shifts(zeros_of: SliceZeros, rules: list):
    """Distiller's rule: biases and BatchNorm shifts do not keep a zero filter alive."""
    ignored: set[str] = set()
    for r in rules:
        if isinstance(r, (ProducerRule, DepthwiseRule)) and r.bias:
            ignored.add(r.bias)
        elif isinstance(r, NormRule):
            ignored.update(n for n in (r.bias, r.running_mean) if n)

    def lookup(name: str, dim: int) -> np.ndarray:
        if name in ignored:
            return np.ones(zeros_of.lookup(name).shape[dim], dtype=bool)
        return zeros_of(name, dim)

    return lookup
