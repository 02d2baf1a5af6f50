"""`prunecli plan`: which policies fire on which epoch, in order, and each pruner's target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from prunecli.cli.console import console, err_console
from prunecli.validation import check_file, problem_dict

from .validate import EXIT_INVALID


def _plot(epoch_plans: list[Any], path: Path) -> None:
    from prunecli.report.plots import plot_plan

    plot_plan(epoch_plans, path)


def _table(epoch_plans: list[Any]) -> Table:
    table = Table(title="Schedule plan (policies in the order they run)", show_lines=False)
    for name, justify in (("epoch", "right"), ("kind", "left"), ("instance", "left"), ("class", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_column("target", justify="right")
    for ep in epoch_plans:
        for i, entry in enumerate(ep.entries):
            if entry.target is not None:
                target = f"{entry.target:.4f}"
            else:
                target = entry.note or ""
            table.add_row(
                str(ep.epoch) if i == 0 else "", entry.kind, entry.instance, entry.class_name, target
            )
        if ep.entries:
            table.add_section()
    return table


def _instances(schedule: Any) -> dict[str, list[str]]:
    """Parameter names each pruner/regularizer acts on (expanded when a model was given)."""
    from prunecli.schedule.vocabulary import parameter_names

    out: dict[str, list[str]] = {}
    for section in ("pruners", "regularizers"):
        for name, comp in schedule.components.get(section, {}).items():
            out[f"{section}.{name}"] = parameter_names(comp)
    return out


def _rounding(schedule: Any, shapes: dict[str, tuple[int, ...]], epoch_plans: list[Any]) -> list[dict]:
    """Kept filter/channel counts, requested and after ``round_to``, at each rounding pruner's final target."""
    from prunecli.pruners.criteria import kept_count
    from prunecli.schedule.vocabulary import rounded_dims

    rows = []
    for name, comp in schedule.components.get("pruners", {}).items():
        round_to, dim = comp.args.get("round_to"), rounded_dims().get(comp.args.get("group_type"))
        targets = [e.target for ep in epoch_plans for e in ep.entries if e.instance == name and e.target]
        if not isinstance(round_to, int) or round_to <= 1 or dim is None or not targets:
            continue
        layers = []
        for tensor in comp.args.get("weights") or []:
            if tensor in shapes and len(shapes[tensor]) > dim:
                width = shapes[tensor][dim]
                requested, kept = kept_count(width, max(targets), round_to)
                layers.append({"tensor": tensor, "width": width, "requested_kept": requested, "kept": kept})
        rows.append(
            {"instance": f"pruners.{name}", "round_to": round_to, "target": max(targets), "layers": layers}
        )
    return rows


@click.command("plan")
@click.argument("schedule", type=click.Path(dir_okay=False))
@click.option(
    "--model",
    "model_spec",
    metavar="MODEL",
    help="Match names against this model (expands re: and __ALL_PRUNABLE__).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1, max=100_000),
    help="Plan this many epochs (default: up to the last pruning epoch).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--strict", is_flag=True, help="Refuse a schedule with a key given twice (default: warn).")
@click.option(
    "--pruner",
    metavar="NAME",
    help="The NNI pruner (L1NormPruner, FPGMPruner, ...) of an NNI config_list that names none.",
)
@click.option(
    "--plot",
    "plot_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw the plan to this image file.",
)
@click.pass_context
def command(
    ctx: click.Context,
    schedule: str,
    model_spec: str | None,
    epochs: int | None,
    as_json: bool,
    strict: bool,
    pruner: str | None,
    plot_file: Path | None,
) -> None:
    """Show, epoch by epoch, the policies of SCHEDULE in the order Distiller runs them.

    Within an epoch policies run in declaration order, LR schedulers last; AGP targets follow
    Distiller's cubic formula exactly.
    """
    from prunecli.schedule.timeline import plan

    result = check_file(schedule, model_spec, dependencies=False, strict=strict, pruner=pruner)
    if result.error is not None:
        if as_json:
            doc = {"file": schedule, "valid": False, "error": result.error.message}
            doc["problems"] = [problem_dict(p) for p in result.problems()]
            click.echo(json.dumps(doc, indent=2))
            ctx.exit(EXIT_INVALID)
        raise result.error
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning.render())}", highlight=False)
    if result.schedule.iterative is not None:
        _iterative_plan(schedule, result.schedule.iterative, as_json)
        return
    epoch_plans = plan(result.schedule, epochs)
    if plot_file is not None:
        _plot(epoch_plans, plot_file)
    instances = _instances(result.schedule)
    rounding = _rounding(result.schedule, result.model.shapes, epoch_plans) if result.model else []
    if as_json:
        doc = {
            "file": schedule,
            "valid": True,
            "model": model_spec,
            "epochs": len(epoch_plans),
            "instances": instances,
            "plan": [ep.to_dict() for ep in epoch_plans],
            "rounding": rounding,
        }
        click.echo(json.dumps(doc, indent=2))
        return
    if not any(ep.entries for ep in epoch_plans):
        console.print(f"no policy fires in epochs 0..{len(epoch_plans) - 1}")
    else:
        console.print(_table(epoch_plans))
    if model_spec:
        console.print(f"[bold]Parameters per instance[/] (model {escape(model_spec)}):", highlight=False)
        for name, names in instances.items():
            console.print(escape(f"  {name}: " + (", ".join(names) or "-")), highlight=False)
    for row in rounding:
        console.print(
            f"[bold]Channel rounding[/] {escape(row['instance'])} (round_to {row['round_to']}, "
            f"at target {row['target']:.4f}):",
            highlight=False,
        )
        for layer in row["layers"]:
            console.print(
                escape(
                    f"  {layer['tensor']}: keeps {layer['kept']} of {layer['width']} "
                    f"(requested {layer['requested_kept']})"
                ),
                highlight=False,
            )
    if plot_file is not None:
        err_console.print(escape(f"plan plot written to {plot_file}"), highlight=False)


def _iterative_plan(path: str, spec: Any, as_json: bool) -> None:
    """The goal of every iteration of a scheduled generator (a search decides as it goes)."""
    from prunecli.iterative.check import planned_tasks

    tasks = planned_tasks(spec)
    rows = [
        {"iteration": t.index, "goal": str(t.goal) if t.goal else None, "start_from": t.start_from}
        for t in tasks or []
    ]
    if as_json:
        doc = {"file": path, "valid": True, "iterative": spec.to_dict(), "plan": rows if tasks else None}
        click.echo(json.dumps(doc, indent=2))
        return
    if tasks is None:
        console.print(
            f"generator {escape(spec.generator)} chooses each task from the previous results; "
            f"it has no fixed plan (budget {escape(str(spec.budget))})",
            highlight=False,
        )
        return
    table = Table(title=f"{spec.generator}: {len(rows)} iteration(s) to {spec.budget}")
    for column in ("iteration", "goal", "start from"):
        table.add_column(column)
    for row in rows:
        table.add_row(str(row["iteration"]), str(row["goal"]), row["start_from"])
    console.print(table)
