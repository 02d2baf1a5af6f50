"""`prunecli collect-stats MODEL_OR_CHECKPOINT --dataset NAME`: activation statistics for quantization."""

from __future__ import annotations

import itertools
import os

import click

from prunecli.cli.console import console


@click.command("collect-stats")
@click.argument("source", metavar="MODEL_OR_CHECKPOINT")
@click.option("--dataset", required=True, help="Data set whose validation split is fed through the model.")
@click.option("--data-dir", default=None, help="Where the data set lives (default: the data set's own default).")
@click.option("--batches", default=8, show_default=True, type=click.IntRange(min=1), help="Batches to run.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--out", "out", default=None, help="Output YAML (default: <model>_quant_stats.yaml).")
def command(source: str, dataset: str, data_dir: str | None, batches: int, batch_size: int, out: str | None) -> None:
    """Write per-layer activation statistics (min/max/avg_min/avg_max/mean/std/b of every leaf
    module's inputs and output) in the format of Distiller's *_quant_stats.yaml files, for a
    PostTrainLinearQuantizer's model_activation_stats."""
    from prunecli.checkpoint import load_model
    from prunecli.data import load_dataset
    from prunecli.models import create_model
    from prunecli.quantization.stats import collect_stats, write_stats

    data = load_dataset(dataset, data_dir)
    if os.path.isfile(source):
        model = load_model(source)
        name = os.path.splitext(os.path.basename(source))[0]
    else:
        model, _ = create_model(source, dataset=dataset)
        name = source
    _, val, _ = data.loaders(batch_size)
    stats = collect_stats(model, itertools.islice(val, batches))
    path = out or f"{name}_quant_stats.yaml"
    write_stats(
        path,
        stats,
        header=f"Activation statistics of {source} on {dataset} (validation split, {batches} batches of "
        f"{batch_size}), written by prunecli collect-stats",
    )
    console.print(f"wrote statistics of {len(stats)} modules to {path}")
