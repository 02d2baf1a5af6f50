"""Channel rounding in the report: each ``round_to`` pruner's layers with their kept counts.

The schedule stored with the checkpoint says which pruners round (``round_to``) and which layers they
act on; the compressed model's shapes say how many filters/channels each kept. A layer whose kept count
is not a multiple of ``round_to`` was narrower than the rounded count (it keeps every channel) or was
thinned by something else, and is flagged so the user sees it.
"""

from __future__ import annotations

from typing import Any

from torch import nn


def rounding_rows(schedule_text: str | None, model: nn.Module, dense: nn.Module) -> list[dict[str, Any]]:
    """One row per rounding pruner: round_to, and per layer its dense width, kept count and whether it is a multiple."""
    if not schedule_text or "round_to" not in schedule_text:
        return []
    from prunecli.errors import PruneCliError
    from prunecli.schedule import load_schedule
    from prunecli.schedule.names import resolve_names
    from prunecli.schedule.vocabulary import rounded_dims

    dense_shapes = {n: tuple(p.shape) for n, p in dense.named_parameters()}
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    try:
        schedule = resolve_names(load_schedule("schedule.yaml", text=schedule_text), dense_shapes)
    except PruneCliError:
        return []  # a stored schedule that no longer resolves has nothing to show here
    rows = []
    for name, comp in schedule.components.get("pruners", {}).items():
        round_to, dim = comp.args.get("round_to"), rounded_dims().get(comp.args.get("group_type"))
        if not isinstance(round_to, int) or round_to <= 1 or dim is None:
            continue
        layers = []
        for tensor in comp.args.get("weights") or []:
            if tensor in shapes and tensor in dense_shapes and len(shapes[tensor]) > dim:
                kept = shapes[tensor][dim]
                layers.append(
                    {
                        "tensor": tensor,
                        "width": dense_shapes[tensor][dim],
                        "kept": kept,
                        "multiple": kept % round_to == 0,
                    }
                )
        rows.append({"instance": f"pruners.{name}", "round_to": round_to, "layers": layers})
    return rows
