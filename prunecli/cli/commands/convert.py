"""`prunecli convert`: a schedule written in another schedule language (Distiller, native, NNI)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape

from prunecli.cli.console import err_console


@click.command("convert")
@click.argument("schedule", type=click.Path(dir_okay=False))
@click.option(
    "--to",
    "target",
    metavar="LANGUAGE",
    required=True,
    help="The language to write: distiller, native or nni.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write the result here (default: print it)."
)
@click.option(
    "--model",
    "model_spec",
    metavar="MODEL",
    help="Resolve names against this model first (needed for an NNI config_list, which selects modules).",
)
@click.option("--dataset", metavar="NAME", help="Data set the model is built for (class count).")
@click.option(
    "--pruner",
    metavar="NAME",
    help="The NNI pruner (L1NormPruner, FPGMPruner, ...) of an NNI config_list that names none.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (text, lost, notes).")
def command(
    schedule: str,
    target: str,
    output: str | None,
    model_spec: str | None,
    dataset: str | None,
    pruner: str | None,
    as_json: bool,
) -> None:
    """Print SCHEDULE in another language: --to distiller, native or nni (see docs/dialects.md).

    What the target language cannot express is listed on stderr (and under "lost" with --json),
    never dropped silently; the exit code stays 0.
    """
    from prunecli.api import convert_schedule

    conv = convert_schedule(schedule, target, model=model_spec, pruner=pruner, dataset=dataset)
    if output is not None:
        Path(output).write_text(conv.text, encoding="utf-8")
    if as_json:
        click.echo(json.dumps({**conv.to_dict(), "output": output}, indent=2))
        return
    if output is None:
        click.echo(conv.text, nl=False)
    for problem in conv.lost:
        err_console.print(
            f"[yellow]not expressible in {target}:[/] {escape(problem.render())}", highlight=False
        )
    for problem in conv.notes:
        err_console.print(f"note: {escape(problem.render())}", highlight=False)
