"""Zero a fraction of every prunable group's channels, as a structured pruner would.

Used by the tests and the coverage script: the same channels are zeroed in every producer of a
group (conv filters, linear rows and their biases), so thinning can remove them exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from prunecli.graph.model import ChannelGroup, DependencyGraph
from prunecli.thinning.recipe import tensor_by_name

PRODUCER_KINDS = frozenset({"conv", "depthwise", "grouped", "linear"})


def producer_members(graph: DependencyGraph, group: ChannelGroup):
    kinds = graph.flow.modules
    return [
        m for m in group.producers() if kinds.get(m.tensor.rpartition(".")[0]) in PRODUCER_KINDS
    ]


def zero_channels(
    model: nn.Module,
    graph: DependencyGraph,
    fraction: float = 0.5,
    *,
    seed: int = 0,
    criterion: str = "random",
) -> dict[int, list[int]]:
    """Zero ``fraction`` of each prunable group's channels; returns group index -> zeroed channels."""
    gen = torch.Generator().manual_seed(seed)
    chosen: dict[int, list[int]] = {}
    with torch.no_grad():
        for group in graph.groups:
            members = producer_members(graph, group)
            count = int(group.size * fraction)
            if not group.prunable or not members or count < 1 or count >= group.size:
                continue
            if criterion == "l1":
                score = torch.zeros(group.size)
                for m in members:
                    t = tensor_by_name(model, m.tensor).detach().abs()
                    per = t.movedim(m.dim, 0).reshape(t.shape[m.dim], -1).sum(1)
                    for c in range(group.size):
                        score[c] += per[list(m.indices(c))].sum()
                drop = torch.argsort(score)[:count].tolist()
            else:
                drop = torch.randperm(group.size, generator=gen)[:count].tolist()
            for m in members:
                t = tensor_by_name(model, m.tensor)
                idx = torch.tensor([i for c in drop for i in m.indices(c)], dtype=torch.long)
                t.index_fill_(m.dim, idx, 0.0)
            chosen[group.index] = sorted(drop)
    return chosen
