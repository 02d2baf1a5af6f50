"""`prunecli sensitivity`: Distiller's one-shot per-layer pruning sensitivity analysis."""

from __future__ import annotations

import json
from pathlib import Path

import click

from prunecli.cli.console import console, err_console


def _load(model_or_checkpoint: str, dataset: str, model_spec: str | None):
    """A checkpoint file when the path exists, else a model spec built for the data set."""
    if Path(model_or_checkpoint).is_file():
        from prunecli.checkpoint import load_model

        return load_model(model_or_checkpoint, model=model_spec)
    from prunecli.models import create_model

    model, _ = create_model(model_or_checkpoint, dataset=dataset)
    return model


@click.command("sensitivity")
@click.argument("model_or_checkpoint")
@click.option(
    "--dataset", required=True, help="Data set whose test split is evaluated (e.g. digits, cifar10)."
)
@click.option("--data-dir", type=click.Path(path_type=Path), help="Where the data set lives.")
@click.option(
    "--model",
    "model_spec",
    metavar="SPEC",
    help="Model spec for a checkpoint without one (weights-only, Distiller) or defined by user code.",
)
@click.option(
    "--kind", type=click.Choice(["element", "filter", "channel"]), default="element", show_default=True
)
@click.option(
    "--range",
    "level_range",
    type=(float, float, float),
    default=(0.0, 0.95, 0.05),
    show_default=True,
    metavar="START STOP STEP",
    help="Sparsity levels, numpy.arange style (STOP excluded).",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    help="Analyse only this parameter (repeatable; default: all 2D/4D weights).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("sensitivity"),
    show_default=True,
    help="Directory for sensitivity.csv and sensitivity.png.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON document.")
@click.option("--max-batches", type=click.IntRange(min=1), help="Evaluate on at most N test batches.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
def command(
    model_or_checkpoint: str,
    dataset: str,
    data_dir: Path | None,
    model_spec: str | None,
    kind: str,
    level_range: tuple[float, float, float],
    params: tuple[str, ...],
    out_dir: Path,
    as_json: bool,
    max_batches: int | None,
    batch_size: int,
    device: str,
) -> None:
    """Prune each weight tensor alone to each sparsity level and record top1, top5 and loss.

    MODEL_OR_CHECKPOINT is a checkpoint file or a model spec (e.g. resnet20_cifar).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from prunecli.data import load_dataset
    from prunecli.devices import resolve_device
    from prunecli.report.evaluate import eval_loader
    from prunecli.report.sensitivity import analysed_parameters, analyze, sparsity_levels, write_outputs

    levels = sparsity_levels(*level_range)
    dev = resolve_device(device)
    model = _load(model_or_checkpoint, dataset, model_spec)
    bundle = load_dataset(dataset, str(data_dir) if data_dir else None)
    loader = eval_loader(bundle.test, batch_size)
    names = list(params) or analysed_parameters(model, kind)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(f"sensitivity ({kind})", total=len(names) * len(levels))

        def advance(point) -> None:
            progress.update(task, advance=1, description=f"{point.parameter} @ {point.sparsity:.2f}")

        points = analyze(
            model, loader, kind=kind, levels=levels, parameters=names, max_batches=max_batches,
            device=dev, on_point=advance,
        )  # fmt: skip
    csv_path, png_path = write_outputs(points, out_dir)
    if as_json:
        doc = {
            "kind": kind,
            "dataset": dataset,
            "levels": levels,
            "csv": str(csv_path),
            "png": str(png_path),
            "results": [p.as_dict() for p in points],
        }
        click.echo(json.dumps(doc, indent=2))
        return
    console.print(f"{len(points)} evaluations ({len(names)} parameters x {len(levels)} levels)")
    console.print(f"wrote {csv_path} and {png_path}")
