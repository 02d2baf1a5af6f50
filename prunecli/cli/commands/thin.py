"""`prunecli thin CHECKPOINT`: remove zero filters/channels for real and save a compact checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape

from prunecli.cli.console import console, err_console

from .deps import parse_input_shape


@click.command("thin")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Compact checkpoint to write (default: <name>.compact.pt next to the input).",
)
@click.option(
    "--mode",
    type=click.Choice(["both", "filters", "channels"]),
    default="both",
    show_default=True,
    help="Remove zero filters, zero channels, or both.",
)
@click.option(
    "--model", "model_spec", metavar="MODEL", help="Architecture, when the checkpoint does not name it."
)
@click.option(
    "--input-shape", help="Example batch shape for tracing, e.g. 1,3,32,32 (default: from the model)."
)
@click.option(
    "--rule",
    type=click.Choice(["exact", "distiller"]),
    default="exact",
    show_default=True,
    help="exact: keep the function; distiller: also drop zero filters whose bias/BatchNorm shift is non-zero.",
)
@click.option(
    "--round-to",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Keep back removable channels so every kept channel count is a multiple of N (e.g. 8).",
)
@click.option(
    "--prune-normalized",
    is_flag=True,
    help="Also remove zero channels that LayerNorm/GroupNorm normalise (approximate: the deviation is reported).",
)
@click.option(
    "--narrow-heads",
    is_flag=True,
    help="Narrow every attention head alike (head_dim shrinks, the number of heads stays) instead of "
    "removing whole heads.",
)
@click.option("--no-verify", is_flag=True, help="Skip the output comparison (not recommended).")
@click.option(
    "--no-int8",
    is_flag=True,
    help="Keep the compact model in float even when the checkpoint carries a quantization plan.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def command(
    checkpoint: Path,
    output: Path | None,
    mode: str,
    model_spec: str | None,
    input_shape: str | None,
    rule: str,
    round_to: int,
    prune_normalized: bool,
    narrow_heads: bool,
    no_verify: bool,
    no_int8: bool,
    as_json: bool,
) -> None:
    """Thin CHECKPOINT: apply its masks, remove zero structures, verify, save a compact checkpoint.

    Masks that are all ones after thinning are not written (they carry no information); masks with
    zeros left in them are kept, sliced to the new shapes. A checkpoint carrying a quantization
    plan is then converted to int8 (docs/quantization.md), unless --no-int8.
    """
    from prunecli.api import ThinOptions, thin

    options = ThinOptions(
        mode=mode,  # type: ignore[arg-type]
        rule=rule,  # type: ignore[arg-type]
        verify=not no_verify,
        round_to=round_to,
        prune_normalized=prune_normalized,
        narrow_heads=narrow_heads,
    )
    summary = thin(
        checkpoint,
        output,
        model=model_spec,
        input_shape=parse_input_shape(input_shape),
        options=options,
        int8=not no_int8,
    )
    for warning in summary.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if as_json:
        click.echo(json.dumps(summary.to_dict()))
        return
    if summary.tensors_changed == 0:
        console.print("Nothing to remove: no filter or channel is zero everywhere it is used.")
    console.print(
        f"Removed {summary.removed_channels} channels in {summary.tensors_changed} tensors: "
        f"params {summary.params_before:,} -> {summary.params_after:,}, "
        f"MACs {summary.macs_before:,} -> {summary.macs_after:,}"
    )
    if summary.verification:
        console.print(f"Check: {summary.verification['summary']}")
    if summary.int8:
        q = summary.int8
        console.print(
            f"int8: {q['kernels']} layers on int8 kernels, {q['simulated']} simulated below 8 bits; "
            f"model {q['bytes_fp32']:,} -> {q['bytes_int8']:,} bytes"
        )
    console.print(f"Wrote {summary.output}")
