"""`prunecli thin CHECKPOINT`: remove zero filters/channels for real and save a compact checkpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from prunecli.cli.console import console
from prunecli.errors import CheckpointError, SourceLocation

from .deps import parse_input_shape


def default_output(path: Path) -> Path:
    name = path.name
    stem = name[: -len(".pt")] if name.endswith(".pt") else name
    return path.with_name(f"{stem}.compact.pt")


def _param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


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
@click.option("--no-verify", is_flag=True, help="Skip the output comparison (not recommended).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def command(
    checkpoint: Path,
    output: Path | None,
    mode: str,
    model_spec: str | None,
    input_shape: str | None,
    rule: str,
    no_verify: bool,
    as_json: bool,
) -> None:
    """Thin CHECKPOINT: apply its masks, remove zero structures, verify, save a compact checkpoint."""
    import torch

    from prunecli.checkpoint import load_checkpoint, load_model, save_checkpoint
    from prunecli.report.compute import total_macs
    from prunecli.thinning import ThinningRecipe, thin_model

    data = load_checkpoint(checkpoint)
    model = load_model(checkpoint, model=model_spec)
    example = torch.randn(_input_shape(data, model_spec, input_shape, checkpoint))
    masks = {k: v for k, v in (data.get("masks") or {}).items() if isinstance(v, torch.Tensor)}
    params_before, macs_before = _param_count(model), total_macs(model, example)
    start = time.perf_counter()
    recipe = thin_model(model, example, mode=mode, masks=masks, verify=not no_verify, rule=rule)
    seconds = time.perf_counter() - start
    previous = data.get("recipe")
    merged = ThinningRecipe.from_dict(previous).then(recipe) if previous else recipe
    out = output or default_output(checkpoint)
    payload = dict(data)
    payload.update(
        state_dict=model.state_dict(),
        masks=masks,
        recipe=merged.to_dict() if not merged.is_empty() else None,
        optimizer=None,  # optimizer and scheduler state hold dense shapes: a compact file restarts them
        scheduler=None,
    )
    save_checkpoint(out, payload)
    summary = {
        "input": str(checkpoint),
        "output": str(out),
        "mode": mode,
        "rule": rule,
        "removed_channels": recipe.removed_channels,
        "tensors_changed": len(recipe.tensors),
        "params_before": params_before,
        "params_after": _param_count(model),
        "macs_before": macs_before,
        "macs_after": total_macs(model, example),
        "verified": not no_verify,
        "seconds": round(seconds, 3),
    }
    if as_json:
        click.echo(json.dumps(summary))
        return
    if recipe.is_empty():
        console.print("Nothing to remove: no filter or channel is zero everywhere it is used.")
    console.print(
        f"Removed {summary['removed_channels']} channels in {summary['tensors_changed']} tensors: "
        f"params {params_before:,} -> {summary['params_after']:,}, "
        f"MACs {macs_before:,} -> {summary['macs_after']:,}" + (" (output verified)" if not no_verify else "")
    )
    console.print(f"Wrote {out}")


def _input_shape(data: dict, model_spec: str | None, text: str | None, path: Path) -> tuple[int, ...]:
    shape = parse_input_shape(text)
    if shape is not None:
        return shape
    from prunecli.models import ModelSpec, default_input_shape

    recorded = data.get("model") if isinstance(data.get("model"), dict) else {}
    if model_spec:  # the data set the checkpoint was trained on still sizes a user model's input
        return default_input_shape(model_spec, recorded.get("dataset"))
    if data.get("model"):
        return default_input_shape(ModelSpec.from_dict(data["model"]))
    raise CheckpointError(
        "cannot tell the model's input shape from the checkpoint",
        location=SourceLocation(str(path)),
        hint="pass --input-shape, e.g. --input-shape 1,3,32,32",
    )
