"""Checks of an ``iterative:`` section that need the model (``prunecli run`` before training,
``prunecli validate --model``), and the fixed plan of the scheduled generators (``prunecli plan``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from prunecli.errors import ConfigError
from prunecli.iterative.generators import GeneratorError, build_generator
from prunecli.iterative.generators.scheduled import ScheduledGenerator
from prunecli.iterative.pruning import Calibrate, IterativePruningError, LevelPruner
from prunecli.iterative.scheduler import check_budget, search_cost
from prunecli.iterative.spec import IterativeSpec
from prunecli.iterative.task import Measurements, SearchSpace, Task, TaskGenerator, TaskResult


def build_parts(spec: IterativeSpec, calibrate: Calibrate | None = None) -> tuple[TaskGenerator, LevelPruner]:
    """The generator and pruner a section names (user code is imported here); located ConfigErrors.

    ``calibrate`` runs training batches for metrics that learn from them (see :class:`LevelPruner`).
    """
    where = spec.where
    try:
        generator = build_generator(spec.generator, spec.generator_options)
    except GeneratorError as exc:
        raise ConfigError(exc.message, location=where.get("generator"), hint=exc.hint) from None
    try:
        pruner = LevelPruner(**spec.pruner, weights=spec.weights, calibrate=calibrate)
    except IterativePruningError as exc:
        raise ConfigError(exc.message, location=where.get("pruner"), hint=exc.hint) from None
    return generator, pruner


def check_on_model(
    spec: IterativeSpec, model: nn.Module, example_input: Any, latency: Any = None
) -> float | None:
    """Parameter names, the pruner on this model, and the budget's reach (the smallest reachable
    value, returned; None for latency budgets). Raises located ConfigErrors; trains nothing.

    With ``latency`` (the run's :class:`LatencyOptions`) a latency budget is checked too, against
    the per-layer latency table measured on this (untrained) model: its latency is the trained one's.
    """
    generator, pruner = build_parts(spec, calibrate=_run_supplies_batches)
    where = spec.where
    try:
        pruner.bind(model, example_input)
    except IterativePruningError as exc:
        raise ConfigError(
            exc.message, location=where.get(exc.key) or where.get("pruner"), hint=exc.hint
        ) from None
    except ValueError as exc:  # the engine refusing the combination (AxisProblem, EngineError)
        hint = getattr(exc, "hint", "") or "see docs/pruning-engine.md"
        raise ConfigError(
            getattr(exc, "message", str(exc)), location=where.get("pruner"), hint=hint
        ) from None
    reachable = check_budget(pruner, model, spec.budget_value, spec.max_sparsity_per_layer, where)
    budget = spec.budget_value
    if (
        latency is not None
        and budget is not None
        and budget.metric == "latency_ms"
        and hasattr(generator, "bind")
    ):
        space = SearchSpace(
            shares=pruner.shares(model, "macs"),
            budget=budget,
            dense=Measurements(),
            max_level=spec.max_sparsity_per_layer,
        )
        search_cost(pruner, model, example_input, space, latency, None, where)
    return reachable


def _run_supplies_batches(model: nn.Module, after_backward: Callable[[], None]) -> None:
    """Stands for ``prunecli run``'s calibration while checking: a run feeds training batches."""
    del model, after_backward


def planned_tasks(spec: IterativeSpec) -> list[Task] | None:
    """Every task a scheduled generator (agp, linear, lottery_ticket) will propose, in order; None
    for generators whose next task depends on the results (searches)."""
    generator, _ = build_parts(spec)
    if not isinstance(generator, ScheduledGenerator) or spec.budget_value is None:
        return None
    space = SearchSpace({}, spec.budget_value, Measurements(), spec.max_sparsity_per_layer, spec.iterations)
    pending = list(generator.initial_tasks(space))
    tasks: list[Task] = []
    while pending:
        task = pending.pop(0)
        tasks.append(task)
        pending.extend(generator.next_tasks(TaskResult(task, None, Measurements(), {}, True)))
    return tasks
