"""``prunecli import-distiller CHECKPOINT -o OUT.pt``: a Distiller checkpoint as a prunecli one."""

from __future__ import annotations

import json
from pathlib import Path

import click

from prunecli.cli.console import console


@click.command("import-distiller")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="prunecli checkpoint to write.",
)
@click.option(
    "--model", "model_spec", metavar="MODEL", help="Architecture, when the checkpoint's arch is not enough."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def command(checkpoint: Path, output: Path, model_spec: str | None, as_json: bool) -> None:
    """Read a Distiller CHECKPOINT (.pth.tar) and write it in prunecli's format.

    The original is read without importing Distiller or running anything it names; its thinning
    recipes rebuild the thinned architecture, and weights, masks, optimizer state and epoch are
    kept. Other commands read Distiller files directly too; this makes the conversion once.
    """
    from prunecli.checkpoint.model import import_checkpoint

    payload = import_checkpoint(checkpoint, output, model=model_spec)
    recipe = payload.get("recipe") or {}
    summary = {
        "input": str(checkpoint),
        "output": str(output),
        "model": (payload.get("model") or {}).get("name"),
        "epoch": payload.get("epoch"),
        "thinned_tensors": len(recipe.get("tensors", {})),
        "masks": sum(1 for m in payload["masks"].values() if m is not None),
        "optimizer": payload.get("optimizer_type") if payload.get("optimizer") else None,
    }
    if as_json:
        click.echo(json.dumps(summary))
        return
    console.print(
        f"Wrote {output}: model {summary['model']}, epoch {summary['epoch']}, "
        f"{summary['thinned_tensors']} thinned tensors, {summary['masks']} masks, "
        f"optimizer state: {summary['optimizer'] or 'none'}",
        highlight=False,
        soft_wrap=True,
    )
