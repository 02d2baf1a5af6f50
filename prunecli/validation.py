"""Checking a schedule without training: syntax, classes, arguments, epochs and, with a model, names.

The use case behind ``prunecli validate`` and ``prunecli plan`` (and :func:`prunecli.api.check_schedule`):
it never raises for bad input; the :class:`CheckResult` holds the error, every problem with its
file:line:column, and the warnings of the dependency check (coupled tensors pruned without a Leader).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prunecli.errors import DataError, Problem, PruneCliError, SourceLocation

if TYPE_CHECKING:
    import torch
    from torch import nn

    from prunecli.schedule.model import Schedule


@dataclass
class ModelInfo:
    """What a schedule check needs from a model: its spec, parameter shapes, the module itself."""

    spec: str
    shapes: dict[str, tuple[int, ...]]
    module: nn.Module | None = None
    example_input: torch.Tensor | None = None


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


def _has_native(schedule: Schedule) -> bool:
    """Native engine entries are built for the model, so combinations it rules out show up now."""
    from prunecli.schedule.native import NATIVE_CLASS

    return any(c.class_name == NATIVE_CLASS for c in schedule.components.get("pruners", {}).values())


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


def _location_dict(loc: SourceLocation | None) -> dict[str, Any]:
    if loc is None:
        return {"file": None, "line": None, "column": None}
    return {"file": loc.file, "line": loc.line, "column": loc.column}


def problem_dict(p: Problem) -> dict[str, Any]:
    """A problem as plain data (the ``--json`` documents of validate and plan)."""
    return {"message": p.message, **_location_dict(p.location), "hint": p.hint}


def schedule_summary(schedule: Schedule) -> dict[str, Any]:
    """Component counts per section and the epochs the policies span."""
    from prunecli.schedule.model import SECTIONS

    epochs = [e for p in schedule.policies for e in p.epochs]
    return {
        "components": {s: len(schedule.components.get(s, {})) for s in SECTIONS},
        "policies": len(schedule.policies),
        "first_epoch": min(epochs, default=None),
        "last_epoch": max(epochs, default=None),
        "last_pruning_epoch": schedule.last_epoch() if schedule.policies else None,
    }


@dataclass
class CheckResult:
    """The outcome of :func:`check_file`; ``valid`` is False when ``error`` is set."""

    path: str
    schedule: Schedule | None = None  # names resolved when a model was given
    model: ModelInfo | None = None
    classification: str | None = None  # what the file is, when it is Distiller YAML but not a schedule
    dialect: str | None = None  # the language the file is read as ("distiller", "nni", ...), when readable
    error: PruneCliError | None = None
    warnings: list[Problem] = field(default_factory=list)
    #: an iterative schedule checked on a model: the smallest value its budget's metric can reach
    reachable: float | None = None

    @property
    def valid(self) -> bool:
        return self.error is None

    def problems(self) -> list[Problem]:
        if self.error is None:
            return []
        return self.error.problems or [Problem(self.error.message, self.error.location, self.error.hint)]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the ``prunecli validate --json`` document)."""
        doc: dict[str, Any] = {
            "file": self.path,
            "valid": self.valid,
            "dialect": self.schedule.dialect if self.schedule is not None else self.dialect,
            "classification": self.classification,
            "model": self.model.spec if self.model else None,
            "error": self.error.message if self.error else None,
            "problems": [problem_dict(p) for p in self.problems()],
            "warnings": [problem_dict(p) for p in self.warnings],
        }
        if self.schedule is not None and self.valid:
            doc["summary"] = schedule_summary(self.schedule)
        if self.reachable is not None:
            doc["reachable"] = self.reachable
        return doc


def check_file(
    path: str,
    model: str | ModelInfo | None = None,
    *,
    dependencies: bool = True,
    strict: bool = False,
    dataset: str | None = None,
    pruner: str | None = None,
) -> CheckResult:
    """Load, validate and (with a model) name-check one schedule; never raises for bad input.

    ``pruner``: the NNI pruner of an NNI config_list that names none (``--pruner``).

    With ``strict`` a key given twice in the YAML is an error; otherwise it is a warning.

    ``dependencies``: with a model, also look for coupled tensors (residual adds, concatenations)
    pruned without a Leader group; that builds the model for real and traces it.

    ``dataset``: the data set the model is built for (class count, example input); by default the
    one the schedule's thinning extension names (``dataset:``), as ``prunecli run`` does.
    """
    from prunecli.schedule import NotAScheduleError, load_schedule
    from prunecli.schedule.names import module_classes, resolve_names

    result = CheckResult(path)
    try:
        schedule = load_schedule(path, strict=strict, pruner=pruner)
        result.schedule = schedule
        result.warnings.extend(schedule.warnings)
        if model is not None:
            native = (
                _has_native(schedule)
                or schedule.iterative is not None
                or bool(schedule.components.get("quantizers"))
            )
            from prunecli.training.setup import schedule_hints

            dataset = dataset or schedule_hints(schedule).get("dataset")
            if dataset is not None:
                _check_dataset_name(dataset)
            info = (
                model
                if isinstance(model, ModelInfo)
                else _model_for(model, need_module=dependencies or native, dataset=dataset)
            )
            result.model = info
            modules = module_classes(info.module) if info.module is not None else None
            result.schedule = resolve_names(schedule, info.shapes, modules)
            result.warnings.extend(w for w in result.schedule.warnings if w not in result.warnings)
            if schedule.iterative is not None and info.module is not None:
                from prunecli.iterative.check import check_on_model

                result.reachable = check_on_model(schedule.iterative, info.module, info.example_input)
            elif native and info.module is not None:
                from prunecli.compression.build import check_native_pruners, check_quantizers

                check_native_pruners(result.schedule, info.module, info.example_input)
                check_quantizers(result.schedule, info.module)
            if dependencies and info.module is not None and info.example_input is not None:
                from prunecli.graph.schedule_check import check_schedule_dependencies

                result.warnings.extend(
                    check_schedule_dependencies(result.schedule, info.module, info.example_input)
                )
    except NotAScheduleError as exc:
        result.classification = exc.classification
        result.error = exc
    except PruneCliError as exc:
        result.error = exc
    result.dialect = result.schedule.dialect if result.schedule is not None else _dialect_of(path)
    return result


def _dialect_of(path: str) -> str | None:
    """The language a file that failed to load is read as (None when it is not even YAML)."""
    from pathlib import Path

    from prunecli.schedule.dialects import DEFAULT_DIALECT, detect_dialect
    from prunecli.schedule.yamlio import load_yaml

    try:
        data, _ = load_yaml(Path(path), source_name=path, require_mapping=False, duplicates="last-wins")
    except PruneCliError:
        return None
    dialect = detect_dialect(data)
    return dialect.name if dialect is not None else DEFAULT_DIALECT
