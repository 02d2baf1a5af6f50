"""thin_model: remove zero filters/channels for real, then prove the function did not change."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import torch
from torch import nn

from prunecli.errors import ThinningError
from prunecli.graph import build_dependency_graph
from prunecli.graph.build import _as_tuple
from prunecli.graph.model import ChannelGroup, DependencyGraph
from prunecli.thinning.execute import UndoLog, execute_recipe, module_attributes
from prunecli.thinning.plan import plan_removal
from prunecli.thinning.recipe import ThinningRecipe, tensor_by_name
from prunecli.thinning.verify import Reference, Verification, first_divergence, kept_inputs, layer_outputs


def thin_model(
    model: nn.Module,
    example_input: Any,
    *,
    mode: str = "both",
    optimizer: torch.optim.Optimizer | None = None,
    masks: MutableMapping[str, torch.Tensor | None] | None = None,
    verify: bool = True,
    graph: DependencyGraph | None = None,
    rule: str = "exact",
    round_to: int = 1,
    prune_normalized: bool = False,
    narrow_heads: bool = False,
) -> ThinningRecipe:
    """Physically remove channels that do not affect the output; returns what was done.

    ``masks`` are multiplied into the weights first (as the compression scheduler does), then
    sliced together with the weights. With ``verify`` the eval-mode output on ``example_input``
    must match the masked model's; otherwise every change (masking included) is undone and a
    :class:`ThinningError` names the first diverging layer. ``rule="distiller"`` also removes zero
    filters whose bias or BatchNorm shift is non-zero (Distiller's behaviour); those shifts are
    zeroed first, and the output is verified against that model. ``round_to`` > 1 keeps back the
    highest-ranked removable channels of each group so its kept count is a multiple of ``round_to``.

    ``prune_normalized`` also removes zero channels that a LayerNorm/GroupNorm normalises (with the
    norm's zero scale and shift): the norm's statistics change, so the output changes a little; the
    verification then records that deviation (status ``deviation``) instead of requiring equality.
    ``narrow_heads`` narrows attention heads (the same positions of every head go, ``head_dim``
    shrinks, the number of heads stays) instead of removing whole heads; the query rows are rescaled
    by ``sqrt(new head_dim / old)`` so the attention scores keep their value and the thinning stays
    exact. A ``graph`` passed in decides by itself (built with or without these options).
    """
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise ThinningError(
            f"round_to must be an integer >= 1, got {round_to!r}", hint="pass --round-to 1 or more"
        )
    inputs = _as_tuple(example_input)
    undo = UndoLog()
    try:
        _apply_masks(model, masks, undo)
        if graph is None:
            graph = build_dependency_graph(
                model, inputs, prune_normalized=prune_normalized, narrow_heads=narrow_heads
            )
        plan = plan_removal(model, graph, mode, rule, round_to)
        warnings = [_emptied_warning(model, group) for group in plan.emptied]
        if not plan.keep:
            return ThinningRecipe(warnings=warnings)
        if rule == "distiller":
            _silence(model, graph, plan.removed, undo)
        reference = Reference.record(model, inputs) if verify else None
        tensors: dict[str, list[tuple[int, list[int]]]] = {}
        for (name, dim), idx in plan.keep.items():
            tensors.setdefault(name, []).append((dim, idx))
        recipe = ThinningRecipe(
            tensors=tensors, removed_channels=plan.removed_channels, warnings=warnings, scales=plan.scales
        )
        execute_recipe(model, recipe, masks=masks, optimizer=optimizer, undo=undo)
        recipe.modules = module_attributes(model, graph.flow.modules, plan.modules)
        for module, attrs in plan.attributes.items():
            recipe.modules.setdefault(module, {}).update(attrs)
        execute_recipe(model, ThinningRecipe(modules=recipe.modules), undo=undo)
        if reference is not None:
            approximate = bool(plan.normalized_groups)
            recipe.checks.append(_verify(model, inputs, reference, recipe, undo, approximate).to_dict())
        return recipe
    except BaseException:
        undo.undo()
        raise


def _emptied_warning(model: nn.Module, group: ChannelGroup) -> str:
    """Every channel of a group was pruned: say so loudly, name the weights, say how to avoid it.

    The message travels in the recipe (``warnings``) to whoever thinned: ``prunecli thin`` prints
    it, a run lists it with its warnings.
    """

    def weights(members: list) -> list[str]:
        return sorted({m.tensor for m in members if tensor_by_name(model, m.tensor).dim() > 1})

    producers = weights(group.producers()) or group.tensors()
    readers = weights(group.consumers())
    return (
        f"all {group.size} channels of {', '.join(producers)} are zero (every filter was pruned"
        + (f"; read by {', '.join(readers[:4])}" if readers else "")
        + "): one zero channel is kept so the network stays connected, and the layer's output is "
        "constant. Distiller refuses this ('Trying to set zero filters ... is not allowed'). Lower the "
        "pruning of these tensors (final_sparsity, desired_sparsity or the threshold) so that at least "
        "one filter survives"
    )


def _silence(model: nn.Module, graph: DependencyGraph, removed, undo: UndoLog) -> None:
    """Zero every producing parameter slice of the channels about to go (biases, BatchNorm affine)."""
    comp = graph.flow.component
    for rec in graph.flow.records:
        if rec.role != "out":
            continue
        t = tensor_by_name(model, rec.tensor)
        drop = removed[comp[rec.ids]]
        if not isinstance(t, nn.Parameter) or not drop.any():
            continue
        idx = torch.as_tensor(drop.nonzero()[0], dtype=torch.long, device=t.device)
        old = t.data
        t.data = old.index_fill(rec.dim, idx, 0.0)
        undo.add(lambda p=t, old=old: setattr(p, "data", old))


def _apply_masks(model: nn.Module, masks, undo: UndoLog) -> None:
    if not masks:
        return
    for name, mask in masks.items():
        if mask is None:
            continue
        try:
            p = tensor_by_name(model, name)
        except ThinningError as exc:
            raise ThinningError(
                f"mask for '{name}' does not match any parameter of the model",
                hint="masks must be keyed by the model's parameter names",
            ) from exc
        if tuple(mask.shape) != tuple(p.shape):
            raise ThinningError(
                f"mask for '{name}' has shape {tuple(mask.shape)} but the parameter has {tuple(p.shape)}",
                hint="the masks belong to a different (or already thinned) model",
            )
        masked = p.data * mask.to(p.dtype)
        if torch.equal(masked, p.data):
            continue
        old = p.data
        p.data = masked
        undo.add(lambda p=p, old=old: setattr(p, "data", old))


def _verify(
    model, inputs, reference: Reference, recipe: ThinningRecipe, undo: UndoLog, approximate: bool
) -> Verification:
    def kept_outputs(module: str) -> list[int] | None:
        for suffix in ("weight", "running_mean"):
            for d, idx in recipe.tensors.get(f"{module}.{suffix}", []):
                if d == 0:
                    return idx
        return None

    result = reference.compare(model, kept_inputs(recipe.tensors), approximate=approximate)
    if result.passed or approximate:
        return result
    after = layer_outputs(model, inputs)
    undo.undo()
    before = layer_outputs(model, inputs)
    layer = first_divergence(before, after, kept_outputs)
    where = f"layer '{layer}'" if layer else "the model output"
    raise ThinningError(
        f"thinning changed the model's function ({result.summary()}); first diverging: {where}. "
        "The model was left unchanged",
        hint="this is a gap in prunecli's dependency analysis: run with mode='filters' or 'channels', "
        "or report the model; `prunecli deps` shows the groups found",
    )
