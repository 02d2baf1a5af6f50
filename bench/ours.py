"""prunecli's side of every benchmark, through its public interfaces only.

Parts of prunecli that are not importable turn into :class:`Unavailable`, so a table can say
which part was missing instead of the whole run failing.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bench.results import Unavailable


def require(module: str, attribute: str) -> Any:
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise Unavailable(f"{module}.{attribute} not available ({type(exc).__name__})") from exc


def create_model(name: str) -> nn.Module:
    model, _spec = require("prunecli.models", "create_model")(name)
    return model


def level_schedule_text(param_names: list[str], level: float) -> str:
    """A one-pruner schedule that keeps every named tensor at ``level`` element-wise sparsity."""
    levels = "\n".join(f"      {name}: {level}" for name in param_names)
    return (
        "version: 1\n"
        "pruners:\n"
        "  level_pruner:\n"
        "    class: SparsityLevelParameterPruner\n"
        "    levels:\n"
        f"{levels}\n"
        "policies:\n"
        "  - pruner:\n"
        "      instance_name: level_pruner\n"
        "    epochs: [0]\n"
    )


def load_schedule_text(text: str, name: str = "bench-schedule.yaml") -> Any:
    return require("prunecli.schedule", "load_schedule")(name, text=text)


def build_scheduler(schedule: Any, model: nn.Module, optimizer: Any, **kwargs: Any) -> Any:
    return require("prunecli.compression", "build_scheduler")(schedule, model, optimizer, **kwargs)


def filter_schedule_text(param_names: list[str], fraction: float) -> str:
    """One-shot L1 filter pruning of every listed convolution at ``fraction``, on epoch 0."""
    weights = "\n".join(f"      - {name}" for name in param_names)
    return (
        "version: 1\n"
        "pruners:\n"
        "  filter_pruner:\n"
        "    class: L1RankedStructureParameterPruner\n"
        "    group_type: Filters\n"
        f"    desired_sparsity: {fraction}\n"
        "    weights:\n"
        f"{weights}\n"
        "policies:\n"
        "  - pruner:\n"
        "      instance_name: filter_pruner\n"
        "    epochs: [0]\n"
    )


#: the phases of :func:`prune_filters_and_thin`, in order
PHASES = ("dependency graph", "schedule + coupled masks", "thinning")


def prune_filters_and_thin(
    model: nn.Module,
    example_input: torch.Tensor,
    fraction: float,
    *,
    verify: bool = False,
    phases: dict[str, float] | None = None,
    round_to: int = 1,
) -> dict:
    """Dependency analysis, coupled L1 filter ranking, masking and thinning, as `prunecli` does it.

    ``phases`` receives the CPU seconds of each of :data:`PHASES`; ``round_to`` rounds every coupled
    group's kept count up to a multiple of it. The model shrinks in place; returns the thinning recipe
    as plain data (what a compact checkpoint stores).
    """
    thin_model = require("prunecli.thinning", "thin_model")
    build_graph = require("prunecli.graph", "build_dependency_graph")
    clock = [time.process_time()]

    def lap(phase: str) -> None:
        now = time.process_time()
        if phases is not None:
            phases[phase] = now - clock[0]
        clock[0] = now

    graph = build_graph(model, example_input)  # built once, used by the masks and the thinning
    lap(PHASES[0])
    names = [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    schedule = load_schedule_text(filter_schedule_text(names, fraction))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = build_scheduler(
        schedule,
        model,
        optimizer,
        example_input=example_input,
        auto_dependency=True,
        dependency_graph=graph,
        **({"round_to": round_to} if round_to > 1 else {}),
    )
    scheduler.on_epoch_begin(0)
    scheduler.on_minibatch_begin(0, 0, 1, optimizer)
    lap(PHASES[1])
    recipe = thin_model(
        model, example_input, masks=scheduler.masks, optimizer=optimizer, verify=verify, graph=graph
    )
    lap(PHASES[2])
    return recipe.to_dict()


def prune_every_group_and_thin(
    model: nn.Module,
    example_input: torch.Tensor,
    fraction: float | Callable[[Any], float],
    *,
    prune_normalized: bool = True,
    verify: bool = True,
    narrow_heads: bool = False,
) -> Any:
    """``fraction`` of every prunable channel group removed, ranked by L1 norm, with prunecli's public API.

    ``fraction`` may be a function of the group (a ``ChannelGroup``) to give groups different fractions,
    e.g. one for the normalised embedding/head positions and another for the MLPs.

    Each group's channels are scored by the summed, per-tensor normalised L1 norms of its producing
    weights (as ``auto_dependency`` ranks them); the lowest ``floor(fraction * size)`` are zeroed in
    every producer (norm scales and shifts, embeddings included) and ``thin_model`` removes them.
    Returns the recipe (its ``checks`` hold the deviation when normalised channels went).
    """
    build_graph = require("prunecli.graph", "build_dependency_graph")
    thin_model = require("prunecli.thinning", "thin_model")
    graph = build_graph(model, example_input, prune_normalized=prune_normalized, narrow_heads=narrow_heads)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for group in graph.prunable_groups():
            count = int(group.size * (fraction(group) if callable(fraction) else fraction))
            producers = [m for m in group.producers() if m.tensor in params]
            if count < 1 or count >= group.size or not producers:
                continue
            scores = torch.zeros(group.size, dtype=torch.float64)
            for m in producers:
                t = params[m.tensor]
                if t.dim() < 2:
                    continue
                per = t.detach().abs().movedim(m.dim, 0).reshape(t.shape[m.dim], -1).sum(1).double()
                per = per.view(-1, m.block).sum(1)
                channels = m.offset + torch.arange(per.numel())
                inside = (channels >= 0) & (channels < group.size)
                per = per[inside] / per[inside].mean().clamp_min(1e-12)
                scores.index_add_(0, channels[inside], per)
            drop = torch.argsort(scores)[:count].tolist()
            for m in producers:
                idx = torch.tensor([i for c in drop for i in m.indices(c)], dtype=torch.long)
                params[m.tensor].index_fill_(m.dim, idx, 0.0)
    return thin_model(model, example_input, graph=graph, prune_normalized=prune_normalized, verify=verify)
