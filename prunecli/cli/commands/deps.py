"""`prunecli deps MODEL`: the channel groups found in a model, with their member tensors."""

from __future__ import annotations

import json

import click
from rich.markup import escape
from rich.table import Table

from prunecli.cli.console import console
from prunecli.errors import ConfigError


def parse_input_shape(text: str | None) -> tuple[int, ...] | None:
    """``1,3,32,32`` -> (1, 3, 32, 32); ConfigError naming the bad part otherwise."""
    if text is None:
        return None
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        shape = ()
    if len(shape) < 2 or any(d <= 0 for d in shape):
        raise ConfigError(
            f"--input-shape '{text}' is not a shape",
            hint="write the batch shape as comma-separated positive integers, e.g. 1,3,32,32",
        )
    return shape


def build_model_and_input(spec: str, dataset: str | None, input_shape: str | None):
    import torch

    from prunecli.models import create_model, default_input_shape

    model, parsed = create_model(spec, dataset=dataset)
    shape = parse_input_shape(input_shape) or default_input_shape(parsed, dataset)
    return model, torch.randn(shape)


def _member_text(m) -> str:
    extra = []
    if m.offset:
        extra.append(f"offset {m.offset}")
    if m.block != 1:
        extra.append(f"block {m.block}")
    tail = f" ({', '.join(extra)})" if extra else ""
    return f"{m.role:>3} {m.tensor}[dim {m.dim}]{tail}"


@click.command("deps")
@click.argument("model_spec", metavar="MODEL")
@click.option("--dataset", help="Data set the model is built for (sets classes and input shape).")
@click.option("--input-shape", help="Example batch shape, e.g. 1,3,32,32 (default: from the model/data set).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--all", "show_all", is_flag=True, help="Also list groups that cannot be pruned.")
@click.option(
    "--prune-normalized", is_flag=True, help="Count channels that LayerNorm/GroupNorm normalise as prunable."
)
@click.option(
    "--narrow-heads",
    is_flag=True,
    help="Group position j of every attention head (heads narrowed alike) instead of whole heads.",
)
def command(
    model_spec: str,
    dataset: str | None,
    input_shape: str | None,
    as_json: bool,
    show_all: bool,
    prune_normalized: bool,
    narrow_heads: bool,
) -> None:
    """Show the channel groups of MODEL: tensors that must lose the same channels together."""
    from prunecli.graph import build_dependency_graph

    model, example = build_model_and_input(model_spec, dataset, input_shape)
    graph = build_dependency_graph(model, example, prune_normalized=prune_normalized, narrow_heads=narrow_heads)
    if as_json:
        doc = {"model": model_spec, "input_shape": list(example.shape), **graph.to_dict()}
        click.echo(json.dumps(doc))
        return
    prunable = graph.prunable_groups()
    table = Table(title=f"Channel groups of {escape(model_spec)} (input {tuple(example.shape)})")
    table.add_column("group", justify="right")
    table.add_column("channels", justify="right")
    table.add_column("prunable")
    table.add_column("members")
    for group in graph.groups:
        if not group.prunable and not show_all:
            continue
        members = "\n".join(escape(_member_text(m)) for m in group.members)
        status = "yes" if group.prunable else escape(f"no: {group.reason}")
        if group.normalized:
            status += " (approximate: normalised)"
        table.add_row(str(group.index), str(group.size), status, members)
        table.add_section()
    console.print(table)
    hidden = len(graph.groups) - len(prunable)
    console.print(
        f"{len(prunable)} prunable group(s), {sum(g.size for g in prunable)} channels"
        + (
            f"; {hidden} group(s) kept whole (--all lists them with the reason)"
            if hidden and not show_all
            else ""
        )
    )
    for note in graph.notes:
        console.print(f"note: {escape(note)}")
