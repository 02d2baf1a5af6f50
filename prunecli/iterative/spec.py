"""The ``iterative:`` section of a schedule file, read and checked without building a model.

::

    version: 1
    iterative:
      generator: agp                  # a name, {kind: NAME, option: value}, or package.module:Class
      iterations: 4
      budget: macs <= 0.4             # weights / params / macs (ratios to dense) or latency_ms
      max_sparsity_per_layer: 0.9
      pruner: {target: coupled, metric: l1}      # engine axes (allocation: uniform | global)
      weights: [conv1.weight, ...]    # default: every convolution and linear weight but the classifier's
      pretrain_epochs: 4              # dense training before the first iteration
      finetune_epochs: 2              # after every pruning step
      calibration_batches: 16         # training batches a taylor / apoz metric sees before each step
      rewind_epoch: 1                 # lottery ticket with reset_to: rewind
      speedup: true                   # thin when the target allows it
      reset_weight: false             # reset every task's survivors to the initial weights
      latency: {batch_size: 1, threads: 1, runs: 20, warmup: 3, device: cpu}

Every problem is reported at once with its file:line:column (a :class:`ScheduleError`); the command
line's ``--budget``, ``--iterations`` and ``--generator`` go through :func:`with_overrides`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prunecli.errors import ConfigError, Problem, ProblemCollector, ScheduleError, SourceLocation
from prunecli.iterative.task import Budget, BudgetError

COMMAND_LINE = "<command line>"

#: key -> (what it holds, for messages)
KEYS: dict[str, str] = {
    "generator": "a generator name, {kind: NAME, ...options} or package.module:Class",
    "iterations": "a positive whole number",
    "budget": "'METRIC <= VALUE', e.g. 'macs <= 0.4'",
    "max_sparsity_per_layer": "a fraction in (0, 1)",
    "pruner": "a mapping of engine axes, e.g. {target: filters, metric: l1}",
    "weights": "a list of parameter names",
    "pretrain_epochs": "a whole number >= 0",
    "finetune_epochs": "a whole number >= 0",
    "calibration_batches": "a whole number >= 1",
    "rewind_epoch": "a whole number >= 0, at most pretrain_epochs",
    "speedup": "true or false",
    "reset_weight": "true or false",
    "latency": "a mapping with batch_size, threads, runs, warmup, device",
}
PRUNER_AXES = ("target", "metric", "allocation", "preset")
LATENCY_KEYS = ("batch_size", "threads", "runs", "warmup", "device")


@dataclass
class IterativeSpec:
    """The checked section; plain data (kept in the run directory for ``--resume``)."""

    generator: str = "agp"
    generator_options: dict[str, Any] = field(default_factory=dict)
    iterations: int = 3
    budget: str | None = None
    max_sparsity_per_layer: float = 0.9
    pruner: dict[str, Any] = field(default_factory=lambda: {"target": "filters", "metric": "l1"})
    weights: list[str] | None = None
    pretrain_epochs: int = 0
    finetune_epochs: int = 1
    calibration_batches: int = 16
    rewind_epoch: int | None = None
    speedup: bool = True
    reset_weight: bool = False
    latency: dict[str, Any] | None = None
    #: where each key was written (for messages raised once the model exists)
    where: dict[str, SourceLocation] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator,
            "generator_options": dict(self.generator_options),
            "iterations": self.iterations,
            "budget": self.budget,
            "max_sparsity_per_layer": self.max_sparsity_per_layer,
            "pruner": dict(self.pruner),
            "weights": list(self.weights) if self.weights is not None else None,
            "pretrain_epochs": self.pretrain_epochs,
            "finetune_epochs": self.finetune_epochs,
            "calibration_batches": self.calibration_batches,
            "rewind_epoch": self.rewind_epoch,
            "speedup": self.speedup,
            "reset_weight": self.reset_weight,
            "latency": dict(self.latency) if self.latency is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IterativeSpec:
        return cls(**{k: v for k, v in data.items() if k in cls().to_dict()})

    @property
    def budget_value(self) -> Budget | None:
        return Budget.parse(self.budget) if self.budget else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Checker:
    """Collects the problems of one section; ``at(key)`` is where that key's value was written."""

    def __init__(self, locate: Callable[..., SourceLocation], prefix: tuple[Any, ...]) -> None:
        self.locate, self.prefix = locate, prefix
        self.problems = ProblemCollector()

    def at(self, *path: Any, key: bool = False) -> SourceLocation | None:
        try:
            return self.locate((*self.prefix, *path), key=key)
        except Exception:  # noqa: BLE001 -- a location is a courtesy, never the error itself
            return None

    def add(self, message: str, path: tuple[Any, ...], hint: str, key: bool = False) -> None:
        self.problems.add(message, self.at(*path, key=key), hint)


def parse_spec(section: Any, locate: Callable[..., SourceLocation], path: str) -> IterativeSpec:
    """Check an ``iterative:`` mapping; ScheduleError listing every problem otherwise."""
    import difflib

    check = _Checker(locate, ("iterative",))
    spec = IterativeSpec()
    if not isinstance(section, Mapping):
        raise ScheduleError(
            f"{path}: the iterative section must be a mapping",
            location=check.at(),
            hint="e.g. 'iterative: {generator: agp, iterations: 4, budget: macs <= 0.4}'",
        )
    for key in section:
        if key not in KEYS:
            close = difflib.get_close_matches(str(key), list(KEYS), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "keys: " + ", ".join(KEYS)
            check.add(f"unknown key {key!r} in the iterative section", (key,), hint, key=True)
    spec.where = {key: loc for key in section if key in KEYS and (loc := check.at(key)) is not None}
    _generator(section, spec, check)
    _numbers(section, spec, check)
    if "budget" in section:
        try:
            spec.budget = str(Budget.parse(str(section["budget"])))
        except BudgetError as exc:
            check.add(exc.message, ("budget",), exc.hint)
    _pruner(section, spec, check)
    _latency(section, spec, check)
    _generator_fits_budget(spec, check)
    _raise(check.problems.problems, f"{path}: invalid iterative section", ScheduleError)
    return spec


def _generator(section: Mapping[str, Any], spec: IterativeSpec, check: _Checker) -> None:
    if "generator" not in section:
        return
    value = section["generator"]
    if isinstance(value, str):
        spec.generator = value
    elif isinstance(value, Mapping) and isinstance(value.get("kind"), str):
        spec.generator = value["kind"]
        spec.generator_options = {k: v for k, v in value.items() if k != "kind"}
    else:
        check.add("generator must be a name or a mapping with 'kind'", ("generator",), KEYS["generator"])
        return
    problem = generator_problem(spec.generator, spec.generator_options)
    if problem is not None:
        message, hint, key = problem
        where = ("generator",) if key == "kind" or isinstance(value, str) else ("generator", key)
        check.add(message, where, hint, key=key != "kind" and not isinstance(value, str))


def generator_problem(name: str, options: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(message, hint, key) when ``name`` is not a known generator or takes none of ``options``.

    User code (``package.module:Class``) is not imported here; it is checked when the run starts.
    """
    import difflib

    from prunecli.engine.registry import is_user_code
    from prunecli.iterative.generators import GENERATORS, generator_options

    if is_user_code(name):
        return None
    if name not in GENERATORS:
        close = difflib.get_close_matches(name, GENERATORS.names(), n=1)
        maybe = f" (did you mean '{close[0]}'?)" if close else ""
        return (
            f"unknown generator {name!r}{maybe}",
            f"use one of: {', '.join(GENERATORS.names())}, or package.module:Class for your own",
            "kind",
        )
    known = generator_options(GENERATORS.get(name))
    for key in options:
        if known is not None and key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = (
                f"did you mean '{close[0]}'?" if close else f"{name} takes: {', '.join(known) or 'nothing'}"
            )
            return f"generator {name} has no option {key!r}", hint, str(key)
    return None


def _numbers(section: Mapping[str, Any], spec: IterativeSpec, check: _Checker) -> None:
    if "iterations" in section:
        value = section["iterations"]
        if not _is_int(value) or value <= 0:
            check.add(
                f"iterations must be a positive whole number, got {value!r}",
                ("iterations",),
                "e.g. iterations: 4 (one pruning step and fine-tuning each)",
            )
        else:
            spec.iterations = value
    for key in ("pretrain_epochs", "finetune_epochs", "rewind_epoch"):
        if key in section and section[key] is not None:
            value = section[key]
            if not _is_int(value) or value < 0:
                check.add(f"{key} must be a whole number >= 0, got {value!r}", (key,), KEYS[key])
            else:
                setattr(spec, key, value)
    if "calibration_batches" in section:
        value = section["calibration_batches"]
        if not _is_int(value) or value < 1:
            check.add(
                f"calibration_batches must be a whole number >= 1, got {value!r}",
                ("calibration_batches",),
                "e.g. calibration_batches: 16",
            )
        else:
            spec.calibration_batches = value
    if spec.rewind_epoch is not None and spec.rewind_epoch > spec.pretrain_epochs:
        check.add(
            f"rewind_epoch {spec.rewind_epoch} comes after the last pretraining epoch ({spec.pretrain_epochs})",
            ("rewind_epoch",),
            "the rewind point is the weights after that many pretraining epochs: lower it or raise "
            "pretrain_epochs",
        )
    if "max_sparsity_per_layer" in section:
        value = section["max_sparsity_per_layer"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            check.add(
                f"max_sparsity_per_layer must be a fraction in (0, 1), got {value!r}",
                ("max_sparsity_per_layer",),
                "e.g. max_sparsity_per_layer: 0.9 keeps at least 10 % of every layer",
            )
        else:
            spec.max_sparsity_per_layer = float(value)
    for key in ("speedup", "reset_weight"):
        if key in section:
            if not isinstance(section[key], bool):
                check.add(f"{key} must be true or false", (key,), KEYS[key])
            else:
                setattr(spec, key, section[key])
    if "weights" in section:
        value = section["weights"]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not value:
            check.add("weights must be a non-empty list of parameter names", ("weights",), KEYS["weights"])
        else:
            spec.weights = list(value)


def _pruner(section: Mapping[str, Any], spec: IterativeSpec, check: _Checker) -> None:
    if "pruner" not in section:
        return
    value = section["pruner"]
    if not isinstance(value, Mapping):
        check.add("pruner must be a mapping of engine axes", ("pruner",), KEYS["pruner"])
        return
    import difflib

    for key in value:
        if key not in PRUNER_AXES:
            close = difflib.get_close_matches(str(key), PRUNER_AXES, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "pruner keys: " + ", ".join(PRUNER_AXES)
            check.add(f"unknown pruner key {key!r}", ("pruner", key), hint, key=True)
    from prunecli.engine.compile import axis_problems

    args = {**{k: v for k, v in value.items() if k in PRUNER_AXES}, "sparsity": 0.5, "weights": ["x"]}
    for problem in axis_problems(args):
        check.add(problem.message, ("pruner", *problem.path), problem.hint)
    allocation = value.get("allocation", "uniform")
    kind = allocation.get("kind") if isinstance(allocation, Mapping) else allocation
    if kind not in ("uniform", "global"):
        check.add(
            f"allocation {kind!r} cannot split an iterative goal",
            ("pruner", "allocation"),
            "use allocation: uniform or allocation: global",
        )
    spec.pruner = dict(value)


def _latency(section: Mapping[str, Any], spec: IterativeSpec, check: _Checker) -> None:
    if "latency" not in section:
        return
    value = section["latency"]
    if not isinstance(value, Mapping):
        check.add("latency must be a mapping", ("latency",), KEYS["latency"])
        return
    for key, item in value.items():
        if key not in LATENCY_KEYS:
            check.add(
                f"unknown latency key {key!r}", ("latency", key), "keys: " + ", ".join(LATENCY_KEYS), key=True
            )
        elif key == "device":
            if not isinstance(item, str):
                check.add(
                    "latency device must be a name such as cpu or cuda", ("latency", key), "e.g. device: cpu"
                )
        elif not _is_int(item) or item < (0 if key == "warmup" else 1):
            check.add(
                f"latency {key} must be a whole number >= {0 if key == 'warmup' else 1}", ("latency", key), ""
            )
    spec.latency = dict(value)


def _generator_fits_budget(spec: IterativeSpec, check: _Checker) -> None:
    budget = spec.budget_value if spec.budget else None
    if budget is None:
        return
    from prunecli.iterative.generators import GENERATORS

    if spec.generator not in GENERATORS:
        return
    metrics = getattr(GENERATORS.get(spec.generator), "budget_metrics", None)
    if metrics is not None and budget.metric not in metrics:
        check.add(
            f"generator {spec.generator} steers {', '.join(metrics)} budgets, not {budget.metric}",
            ("budget",),
            f"use a budget on {metrics[0]} (e.g. '{metrics[0]} <= 0.4'), or a generator that searches "
            "latency",
        )


def _raise(problems: list[Problem], summary: str, error: type[ScheduleError] | type[ConfigError]) -> None:
    """One problem: its own located message; several: the list."""
    if not problems:
        return
    if len(problems) == 1:
        only = problems[0]
        raise error(only.message, location=only.location, hint=only.hint)
    raise error(f"{summary}: {len(problems)} problem(s)", problems=problems)


def with_overrides(spec: IterativeSpec, overrides: Mapping[str, Any]) -> IterativeSpec:
    """``--budget``, ``--iterations``, ``--generator`` from the command line (None = not given)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return spec
    data = {**spec.to_dict()}
    if "generator" in given:
        data["generator"], data["generator_options"] = given["generator"], {}
    if "iterations" in given:
        data["iterations"] = given["iterations"]
    if "budget" in given:
        data["budget"] = given["budget"]
    section = {k: data[k] for k in ("generator", "iterations", "budget") if data.get(k) is not None}
    section["generator"] = (
        {"kind": data["generator"], **data["generator_options"]}
        if data["generator_options"]
        else data["generator"]
    )
    located = _command_line_locate
    check = _Checker(located, ())
    probe = IterativeSpec()
    _generator(section, probe, check)
    _numbers({"iterations": section["iterations"]}, probe, check)
    if "budget" in section:
        try:
            probe.budget = str(Budget.parse(str(section["budget"])))
        except BudgetError as exc:
            check.add(f"--budget: {exc.message}", ("budget",), exc.hint)
    merged = IterativeSpec.from_dict(
        {**data, "budget": probe.budget if "budget" in given else data["budget"]}
    )
    merged.where = {k: v for k, v in spec.where.items() if k not in given}
    merged.where.update({k: SourceLocation(COMMAND_LINE) for k in given})
    _generator_fits_budget(merged, check)
    _raise(check.problems.problems, "invalid command-line options", ConfigError)
    return merged


def _command_line_locate(path: tuple[Any, ...], key: bool = False) -> SourceLocation:
    del path, key
    return SourceLocation(COMMAND_LINE)
