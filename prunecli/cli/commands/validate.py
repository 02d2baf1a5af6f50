"""`prunecli validate`: check a schedule (and optionally its names against a model) without training."""

from __future__ import annotations

import difflib
import importlib
import json
from dataclasses import dataclass, field
from typing import Any

import click
from rich.markup import escape

from prunecli.cli.console import console, err_console
from prunecli.errors import DataError, Problem, PruneCliError, SourceLocation

EXIT_INVALID = 2


@dataclass
class ModelInfo:
    """What a schedule check needs from a model: its spec, parameter shapes, the module itself."""

    spec: str
    shapes: dict[str, tuple[int, ...]]
    module: Any = None
    example_input: Any = None


@dataclass
class CheckResult:
    path: str
    schedule: Any = None  # prunecli.schedule.Schedule, names resolved when a model was given
    model: ModelInfo | None = None
    classification: str | None = None
    error: PruneCliError | None = None
    warnings: list[Problem] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.error is None

    def problems(self) -> list[Problem]:
        if self.error is None:
            return []
        return self.error.problems or [Problem(self.error.message, self.error.location, self.error.hint)]


def load_model_info(
    spec: str, *, meta: bool = False, example_input: bool = True, dataset: str | None = None
) -> ModelInfo:
    """Build the model (on the meta device when only shapes are needed) and read its parameters.

    ``dataset`` sets the class count and the example input's shape, which a model defined by user
    code cannot otherwise tell.
    """
    import torch

    from prunecli.models import create_model, default_input_shape

    if meta:
        with torch.device("meta"):
            model, parsed = create_model(spec, dataset=dataset)
    else:
        model, parsed = create_model(spec, dataset=dataset)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    sample = None
    if example_input and not meta:
        sample = torch.randn(default_input_shape(parsed, dataset))
    return ModelInfo(spec, shapes, model, sample)


def _dependency_checker() -> Any | None:
    """``check_schedule_dependencies`` from the graph package, when it is installed."""
    try:
        module = importlib.import_module("prunecli.graph.schedule_check")
    except ModuleNotFoundError as exc:
        if exc.name in ("prunecli.graph.schedule_check", "prunecli.graph"):
            return None
        raise
    return getattr(module, "check_schedule_dependencies", None)


def _model_for(spec: str, *, need_module: bool, dataset: str | None = None) -> ModelInfo:
    """Shapes only come from the meta device (no memory, instant) unless the module is needed."""
    if not need_module:
        try:
            return load_model_info(spec, meta=True, dataset=dataset)
        except (RuntimeError, NotImplementedError):  # a factory that computes on tensors at build time
            pass
    return load_model_info(spec, dataset=dataset)


def _check_dataset_name(name: str) -> None:
    """Refuse an unknown data set by name before a model is sized for it."""
    from prunecli.data import available_datasets

    known = available_datasets()
    if name.lower() not in known:
        close = difflib.get_close_matches(name.lower(), known, n=3)
        raise DataError(
            f"unknown data set {name!r}",
            hint=(f"did you mean {', '.join(close)}? " if close else "")
            + f"known data sets: {', '.join(known)}",
        )


def check_file(
    path: str,
    model: str | ModelInfo | None = None,
    *,
    dependencies: bool = True,
    dataset: str | None = None,
) -> CheckResult:
    """Load, validate and (with a model) name-check one schedule; never raises for bad input.

    The model is built for ``dataset``, or else for the data set the schedule's thinning extension
    names (``dataset:``), as ``prunecli run`` does.
    """
    from prunecli.schedule import NotAScheduleError, load_schedule
    from prunecli.schedule.names import resolve_names
    from prunecli.training.setup import schedule_hints

    result = CheckResult(path)
    try:
        schedule = load_schedule(path)
        result.schedule = schedule
        if model is not None:
            checker = _dependency_checker() if dependencies else None
            dataset = dataset or schedule_hints(schedule).get("dataset")
            if dataset is not None:
                _check_dataset_name(dataset)
            info = (
                model
                if isinstance(model, ModelInfo)
                else _model_for(model, need_module=checker is not None, dataset=dataset)
            )
            result.model = info
            result.schedule = resolve_names(schedule, info.shapes)
            if checker is not None and info.module is not None and info.example_input is not None:
                result.warnings.extend(checker(result.schedule, info.module, info.example_input))
    except NotAScheduleError as exc:
        result.classification = exc.classification
        result.error = exc
    except PruneCliError as exc:
        result.error = exc
    return result


def _location_dict(loc: SourceLocation | None) -> dict[str, Any]:
    if loc is None:
        return {"file": None, "line": None, "column": None}
    return {"file": loc.file, "line": loc.line, "column": loc.column}


def problem_dict(p: Problem) -> dict[str, Any]:
    return {"message": p.message, **_location_dict(p.location), "hint": p.hint}


def summary(schedule: Any) -> dict[str, Any]:
    from prunecli.schedule.model import SECTIONS

    epochs = [e for p in schedule.policies for e in p.epochs]
    return {
        "components": {s: len(schedule.components.get(s, {})) for s in SECTIONS},
        "policies": len(schedule.policies),
        "first_epoch": min(epochs, default=None),
        "last_epoch": max(epochs, default=None),
        "last_pruning_epoch": schedule.last_epoch() if schedule.policies else None,
    }


def result_dict(result: CheckResult) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "file": result.path,
        "valid": result.valid,
        "classification": result.classification,
        "model": result.model.spec if result.model else None,
        "error": result.error.message if result.error else None,
        "problems": [problem_dict(p) for p in result.problems()],
        "warnings": [problem_dict(p) for p in result.warnings],
    }
    if result.schedule is not None and result.valid:
        doc["summary"] = summary(result.schedule)
    return doc


def _print_ok(result: CheckResult) -> None:
    info = summary(result.schedule)
    parts = [f"{n} {s}" for s, n in info["components"].items() if n]
    text = f"[green]valid[/] {escape(result.path)}: " + (", ".join(parts) or "no components")
    text += f"; {info['policies']} policies"
    if info["first_epoch"] is not None:
        text += f" on epochs {info['first_epoch']}..{info['last_epoch']}"
    if result.model:
        text += (
            f"; every name matches model {escape(result.model.spec)} ({len(result.model.shapes)} parameters)"
        )
    console.print(text, highlight=False)
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
@click.option("--strict", is_flag=True, help="Treat warnings (e.g. residual-dependency findings) as errors.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def command(
    ctx: click.Context,
    schedule: str,
    model_spec: str | None,
    dataset: str | None,
    strict: bool,
    as_json: bool,
) -> None:
    """Check SCHEDULE: YAML syntax, classes, arguments, policies, epochs and (with --model) names.

    Exit 0 when valid, 2 when not (every problem is listed with file:line:column). Files that are
    Distiller YAML but not schedules (activation statistics, AMC network lists) are named as such.
    """
    result = check_file(schedule, model_spec, dataset=dataset)
    failed = not result.valid or (strict and bool(result.warnings))
    if as_json:
        doc = result_dict(result)
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
