"""Zero a fraction of every prunable group's channels, as a structured pruner would.

Used by the tests and the coverage script: the same channels are zeroed in every producer of a
group (conv filters, linear rows and their biases), so thinning can remove them exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from prunecli.graph.model import ChannelGroup, DependencyGraph
from prunecli.thinning.recipe import tensor_by_name

PRODUCER_KINDS = frozenset({"conv", "depthwise", "grouped", "linear", "attention"})


class TinyAttention(nn.Module):
    """Embedding -> self-attention -> classifier, no norm: removing whole heads (or the same
    positions of every head) is exact."""

    def __init__(self, embed: int = 12, heads: int = 3) -> None:
        super().__init__()
        self.embed = nn.Linear(5, embed)
        self.attn = nn.MultiheadAttention(embed, heads, batch_first=True)
        self.head = nn.Linear(embed, 2)

    def forward(self, x):
        h = self.embed(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        return self.head((h + a).mean(1))


def vit_params(d: int, mlp: int, layers: int = 2, patch: int = 4, tokens: int = 17, classes: int = 5) -> int:
    """Parameters of torchvision's VisionTransformer (RGB input) with embedding ``d`` and MLP ``mlp``,
    counted by hand: patch conv, class token, position embedding, per layer two LayerNorms, packed
    q/k/v, output projection and the MLP, the final LayerNorm and the classifier."""
    per_layer = 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (d * mlp + mlp) + (mlp * d + d)
    return (3 * patch * patch * d + d) + d + tokens * d + layers * per_layer + 2 * d + (d * classes + classes)


def producer_members(graph: DependencyGraph, group: ChannelGroup):
    """The members to zero: conv/linear/attention outputs; for a group that passes through a norm
    (``prune_normalized``) every producer, the norm's scale and shift and embeddings included."""
    if group.normalized:
        return group.producers()
    kinds = graph.flow.modules
    return [m for m in group.producers() if kinds.get(m.tensor.rpartition(".")[0]) in PRODUCER_KINDS]


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


def exercise(
    model: nn.Module,
    example_input: torch.Tensor,
    fraction: float = 0.5,
    seed: int = 0,
    *,
    prune_normalized: bool = False,
) -> dict:
    """Zero ``fraction`` of every prunable group, thin, and measure: the coverage check for one model.

    Returns plain numbers; the output comparison here is independent of thin_model's own check.
    """
    import time

    from prunecli.graph import build_dependency_graph
    from prunecli.report.compute import total_macs
    from prunecli.thinning.thin import thin_model
    from prunecli.thinning.verify import Reference, kept_inputs

    model.eval()
    start = time.perf_counter()
    graph = build_dependency_graph(model, example_input, prune_normalized=prune_normalized)
    graph_s = time.perf_counter() - start
    zeroed = zero_channels(model, graph, fraction, seed=seed)
    reference = Reference.record(model, (example_input,))
    params_before = sum(p.numel() for p in model.parameters())
    macs_before = total_macs(model, example_input)
    start = time.perf_counter()
    recipe = thin_model(model, example_input, graph=graph)
    thin_s = time.perf_counter() - start
    approximate = any(g.normalized for g in graph.groups if g.index in zeroed)
    check = reference.compare(model, kept_inputs(recipe.tensors), approximate=approximate)
    return {
        "groups": len(graph.groups),
        "prunable_groups": len(graph.prunable_groups()),
        "normalized_groups": sum(1 for g in graph.prunable_groups() if g.normalized),
        "zeroed_channels": sum(len(v) for v in zeroed.values()),
        "removed_channels": recipe.removed_channels,
        "params_before": params_before,
        "params_after": sum(p.numel() for p in model.parameters()),
        "macs_before": macs_before,
        "macs_after": total_macs(model, example_input),
        "output_mismatch": None if check.passed or check.approximate else check.summary(),
        "verification": check.to_dict(),
        "graph_seconds": graph_s,
        "thin_seconds": thin_s,
    }
