"""Warn when a schedule prunes filters/channels of coupled tensors without a Leader group.

Tensors feeding one residual add (or one concatenation consumer) share output channels: pruned
independently they lose *different* filters, so no channel becomes zero everywhere and thinning
removes nothing (Distiller crashed instead). The fix is a ``group_dependency: Leader`` pruner
listing every coupled producer; the problem shows that YAML.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from prunecli.errors import Problem
from prunecli.graph.build import build_dependency_graph
from prunecli.graph.model import ChannelGroup, DependencyGraph
from prunecli.schedule.vocabulary import channel_group_types


def check_schedule_dependencies(schedule: Any, model: nn.Module, example_input: Any) -> list[Problem]:
    """One problem per pruner and coupled group that the pruner does not cover with a Leader."""
    return [_problem(*gap) for gap in uncovered_couplings(schedule, model, example_input)]


def uncovered_couplings(
    schedule: Any, model: nn.Module, example_input: Any
) -> list[tuple[Any, str, list[str], list[str]]]:
    """(pruner, pruned tensor, its coupled tensors, those the Leader group misses) per gap."""
    pruners = schedule.components.get("pruners", {}) if schedule is not None else {}
    coupled_types = channel_group_types()
    wanted = [
        c for c in pruners.values() if c.args.get("group_type") in coupled_types and c.args.get("weights")
    ]
    if not wanted or example_input is None:
        return []
    graph = build_dependency_graph(model, example_input)
    weights = {name for name, p in model.named_parameters() if p.dim() >= 2}
    gaps = []
    for comp in wanted:
        gaps.extend(_pruner_gaps(comp, graph, weights))
    return gaps


def coupled_tensors(group: ChannelGroup, role: str, dim: int, weights: set[str]) -> list[str]:
    """Weights whose ``dim`` slices belong to ``group`` in ``role`` (producers or readers)."""
    names: list[str] = []
    for m in group.members:
        if m.role == role and m.dim == dim and m.tensor in weights and m.tensor not in names:
            names.append(m.tensor)
    return names


def _pruner_gaps(comp: Any, graph: DependencyGraph, weights: set[str]):
    kind = channel_group_types()[comp.args["group_type"]]
    dim, role = kind.dim, kind.role
    listed = [w for w in comp.args["weights"] if isinstance(w, str)]
    leader = comp.args.get("group_dependency") == "Leader"
    seen: set[int] = set()
    for name in listed:
        for group in graph.groups_of(name, dim):
            if group.index in seen or not group.prunable:
                continue
            seen.add(group.index)
            coupled = coupled_tensors(group, role, dim, weights)
            if len(coupled) < 2:
                continue
            missing = [t for t in coupled if t not in listed]
            if leader and not missing:
                continue
            yield comp, name, coupled, missing


def _problem(comp: Any, name: str, coupled: list[str], missing: list[str]) -> Problem:
    group_type = comp.args["group_type"]
    words = channel_group_types()[group_type].words
    leader = comp.args.get("group_dependency") == "Leader"
    others = [t for t in coupled if t != name]
    what = "is missing " + ", ".join(missing) if leader else "has no group_dependency: Leader"
    return Problem(
        f"pruner '{comp.instance}' prunes {words} of '{name}', which are coupled with "
        f"{', '.join(others)} (residual add or concatenation); the pruner {what}, so the "
        f"tensors lose different {words} and thinning cannot remove them",
        comp.arg_locations.get("weights", comp.location),
        f"move the coupled tensors out of '{comp.instance}' into one Leader group "
        "(the first tensor listed decides for all):\n"
        + leader_yaml(f"{comp.instance}_coupled", comp.class_name, group_type, comp.args, coupled),
    )


def leader_yaml(
    instance: str, class_name: str, group_type: str, args: dict[str, Any], tensors: list[str]
) -> str:
    lines = [
        "pruners:",
        f"  {instance}:",
        f"    class: {class_name}",
        f"    group_type: {group_type}",
        "    group_dependency: Leader",
    ]
    for key in ("desired_sparsity", "initial_sparsity", "final_sparsity"):
        if key in args:
            lines.append(f"    {key}: {args[key]}")
    lines.append("    weights: [" + ", ".join(tensors) + "]")
    return "\n".join(lines)
