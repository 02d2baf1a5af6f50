"""`prunecli validate`: check a schedule (and optionally its names against a model) without training."""

from __future__ import annotations

import json

import click
from rich.markup import escape

from prunecli.cli.console import console, err_console
from prunecli.errors import PruneCliError
from prunecli.validation import CheckResult, check_file, schedule_summary

EXIT_INVALID = 2


def _print_iterative(result: CheckResult) -> None:
    spec = result.schedule.iterative
    text = (
        f"[green]valid[/] {escape(result.path)}: iterative schedule, generator {escape(spec.generator)}, "
        f"{spec.iterations} iteration(s), budget {escape(str(spec.budget or 'none'))}"
    )
    if result.model:
        text += f"; every name matches model {escape(result.model.spec)}"
        if result.reachable is not None:
            metric = spec.budget.split("<=")[0].strip()
            text += (
                f"; the budget is reachable (every layer at max_sparsity_per_layer "
                f"{spec.max_sparsity_per_layer:g} keeps {result.reachable:.4f} of the dense {metric})"
            )
    console.print(text, highlight=False)


def _print_ok(result: CheckResult) -> None:
    if result.schedule.iterative is not None:
        _print_iterative(result)
        return
    from prunecli.schedule.dialects import dialect_title

    info = schedule_summary(result.schedule)
    parts = [f"{n} {s}" for s, n in info["components"].items() if n]
    language = dialect_title(result.schedule.dialect)
    text = f"[green]valid[/] {escape(result.path)} ({language}): " + (", ".join(parts) or "no components")
    text += f"; {info['policies']} policies"
    if info["first_epoch"] is not None:
        text += f" on epochs {info['first_epoch']}..{info['last_epoch']}"
    if result.model:
        text += (
            f"; every name matches model {escape(result.model.spec)} ({len(result.model.shapes)} parameters)"
        )
    console.print(text, highlight=False)
    if result.model is None and result.schedule.bind is not None:
        console.print(
            "which modules it prunes depends on the model: add --model to check its names", highlight=False
        )
    for w in result.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(w.render())}", highlight=False)


@click.command("validate")
@click.argument("schedule", type=click.Path(dir_okay=False))
@click.option("--model", "model_spec", metavar="MODEL", help="Also match parameter names against this model.")
@click.option(
    "--dataset",
    metavar="NAME",
    help="Data set the model is built for (classes, input shape); default: the schedule's thinning "
    "extension's dataset.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Treat warnings (duplicate YAML keys, residual-dependency findings) as errors.",
)
@click.option(
    "--pruner",
    metavar="NAME",
    help="The NNI pruner (L1NormPruner, FPGMPruner, ...) of an NNI config_list that names none.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def command(
    ctx: click.Context,
    schedule: str,
    model_spec: str | None,
    dataset: str | None,
    strict: bool,
    pruner: str | None,
    as_json: bool,
) -> None:
    """Check SCHEDULE: YAML syntax, classes, arguments, policies, epochs and (with --model) names.

    Exit 0 when valid, 2 when not (every problem is listed with file:line:column). Files that are
    Distiller YAML but not schedules (activation statistics, AMC network lists) are named as such.
    The language the file is written in (Distiller's, or an NNI config_list: see docs/dialects.md)
    is named in the output.
    """
    result = check_file(schedule, model_spec, strict=strict, dataset=dataset, pruner=pruner)
    failed = not result.valid or (strict and bool(result.warnings))
    if as_json:
        doc = result.to_dict()
        doc["valid"] = not failed
        click.echo(json.dumps(doc, indent=2))
        if failed:
            ctx.exit(EXIT_INVALID)
        return
    if result.error is not None:
        raise result.error
    _print_ok(result)
    if failed:
        raise PruneCliError(
            f"{len(result.warnings)} warning(s) with --strict",
            problems=result.warnings,
            hint="declare the listed tensors in one group_dependency: Leader pruner",
        )
