"""The contract between the iterative scheduler and its task generators.

A generator never touches a model: it reads :class:`TaskResult` records (what a proposal achieved)
and writes :class:`Task` records (what to try next). The scheduler owns everything with tensors in
it: pruning with an engine pruner, thinning, fine-tuning, evaluating, measuring and saving. This
split is what lets one loop serve AGP, lottery tickets and the search generators alike, and what
makes a run resumable: tasks and results are plain data.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

#: where a task's model comes from. ``previous``: the previous result's model (compact when it was
#: thinned) with its masks; ``best``: the best result so far; ``dense``: the dense starting model.
#: ``initial`` and ``rewind`` prune the previous result like ``previous`` (its trained weights rank
#: the groups), then reset every surviving weight to its value at initialisation (``initial``) or
#: at the rewind point (``rewind``): the lottery-ticket reset.
StartFrom = Literal["previous", "best", "initial", "rewind", "dense"]
START_FROM: tuple[str, ...] = ("previous", "best", "initial", "rewind", "dense")

#: budget quantities; ratios are to the dense model, ``latency_ms`` is measured in milliseconds
BUDGET_METRICS: tuple[str, ...] = ("weights", "params", "macs", "latency_ms")

#: which budgets are ratios to the dense model (the others are absolute)
RATIO_METRICS: tuple[str, ...] = ("weights", "params", "macs")

_BUDGET = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op><=|<|=<|>=|>|==|=)\s*(?P<value>\S+)\s*$"
)


class BudgetError(ValueError):
    """A budget text that cannot be read; ``hint`` says how to write it."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})"


@dataclass(frozen=True)
class Budget:
    """What the final model may cost: ``macs <= 0.4`` keeps at most 40 % of the dense MACs;
    ``latency_ms <= 3.0`` is an absolute, measured bound."""

    metric: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``"macs <= 0.4"`` -> ``Budget("macs", 0.4)``; raises :class:`BudgetError` naming the fix."""
        import difflib

        example = "write 'METRIC <= VALUE', e.g. 'macs <= 0.4' or 'latency_ms <= 3.0'"
        match = _BUDGET.match(str(text))
        if not match:
            raise BudgetError(f"budget {text!r} is not 'METRIC <= VALUE'", example)
        metric = match["metric"]
        if metric not in BUDGET_METRICS:
            close = difflib.get_close_matches(metric, BUDGET_METRICS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"metrics: {', '.join(BUDGET_METRICS)}"
            raise BudgetError(f"unknown budget metric {metric!r}", hint)
        if match["op"] not in ("<=", "=<"):
            raise BudgetError(f"budget {text!r} must be an upper bound", f"write '{metric} <= VALUE'")
        try:
            value = float(match["value"])
        except ValueError:
            raise BudgetError(f"budget {text!r}: {match['value']!r} is not a number", example) from None
        if metric in RATIO_METRICS and not 0 < value <= 1:
            raise BudgetError(
                f"budget {text!r}: {metric} is a ratio to the dense model, in (0, 1]",
                f"e.g. '{metric} <= 0.4' keeps at most 40 % of the dense model's {metric}",
            )
        if metric == "latency_ms" and not value > 0:
            raise BudgetError(
                f"budget {text!r}: a latency budget is a positive number of milliseconds", example
            )
        return cls(metric, value)

    @property
    def is_ratio(self) -> bool:
        return self.metric in RATIO_METRICS

    def met_by(self, measured: Measurements) -> bool:
        return measured.value(self.metric) <= self.value + 1e-9

    def __str__(self) -> str:
        return f"{self.metric} <= {self.value:g}"


@dataclass
class Measurements:
    """What a model costs. Ratios are to the dense model (1.0 = dense)."""

    weights: float = 1.0  # fraction of the pruned tensors' weights left
    params: float = 1.0
    macs: float = 1.0
    latency_ms: float | None = None  # measured end to end, when the run measures latency
    #: absolute counts behind the ratios, for reports
    counts: dict[str, float] = field(default_factory=dict)

    def value(self, metric: str) -> float:
        value = getattr(self, metric)
        if value is None:
            raise ValueError(f"{metric} was not measured for this model")
        return float(value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "params": self.params,
            "macs": self.macs,
            "latency_ms": self.latency_ms,
            "counts": dict(self.counts),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurements:
        return cls(**{k: data[k] for k in ("weights", "params", "macs", "latency_ms", "counts") if k in data})


@dataclass
class Task:
    """One proposal: prune to these per-tensor levels, starting from ``start_from``."""

    index: int
    #: parameter name -> fraction of that tensor's target units to remove (the engine's level)
    levels: dict[str, float]
    start_from: StartFrom = "previous"
    #: run the fine-tuner after pruning (search generators may skip it for cheap probes)
    finetune: bool = True
    #: physically remove what the masks zero (the target must allow it)
    speedup: bool = True
    #: the generator's own words for the log ("SA T=0.42, perturbed conv2.weight")
    note: str = ""
    #: generator-private data carried to the result (plain JSON values only)
    extra: dict[str, Any] = field(default_factory=dict)
    #: instead of per-tensor ``levels``: reach this overall cost (a ratio budget such as
    #: ``macs <= 0.7``) with the pruner's own per-layer allocation (uniform or global, each layer
    #: capped at the space's ``max_level``); NNI's ``total_sparsity`` config
    goal: Budget | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "levels": dict(self.levels),
            "start_from": self.start_from,
            "finetune": self.finetune,
            "speedup": self.speedup,
            "note": self.note,
            "extra": dict(self.extra),
            "goal": str(self.goal) if self.goal is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Task:
        goal = data.get("goal")
        return cls(
            index=int(data["index"]),
            levels={str(k): float(v) for k, v in dict(data.get("levels") or {}).items()},
            start_from=data.get("start_from", "previous"),
            finetune=bool(data.get("finetune", True)),
            speedup=bool(data.get("speedup", True)),
            note=str(data.get("note", "")),
            extra=dict(data.get("extra") or {}),
            goal=Budget.parse(goal) if goal else None,
        )


@dataclass
class TaskResult:
    """What a task achieved, handed back to the generator."""

    task: Task
    #: the evaluator's score (higher is better), e.g. top-1 on the validation split
    score: float | None  # None when the scheduler has no evaluator
    measured: Measurements
    #: the levels actually reached per tensor (can differ from the task's after thinning/rounding)
    levels: dict[str, float]
    meets_budget: bool
    #: the compact checkpoint of this result, when the scheduler keeps one
    checkpoint: str | None = None
    #: what else the evaluator and the loop recorded (loss, top-5, seconds spent)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task.to_dict(),
            "score": self.score,
            "measured": self.measured.to_dict(),
            "levels": dict(self.levels),
            "meets_budget": self.meets_budget,
            "checkpoint": self.checkpoint,
            "metrics": dict(self.metrics),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskResult:
        return cls(
            task=Task.from_dict(data["task"]),
            score=data["score"],
            measured=Measurements.from_dict(data["measured"]),
            levels={str(k): float(v) for k, v in dict(data.get("levels") or {}).items()},
            meets_budget=bool(data["meets_budget"]),
            checkpoint=data.get("checkpoint"),
            metrics=dict(data.get("metrics") or {}),
        )


@dataclass
class SearchSpace:
    """What a generator may allocate: the prunable tensors, their relative cost, and the budget."""

    #: parameter name -> share of the budgeted quantity this tensor's layer accounts for (sums to <= 1)
    shares: Mapping[str, float]
    budget: Budget | None
    dense: Measurements
    #: the largest level any tensor may get (NNI's max_sparsity_per_layer)
    max_level: float = 0.9
    iterations: int = 1
    #: the smallest value of the budget's metric any allocation reaches (every prunable tensor at
    #: ``max_level``), when it is computable; None for latency budgets
    reachable: float | None = None


class TaskGenerator(abc.ABC):
    """Proposes tasks. Subclasses implement two methods; the scheduler calls nothing else except
    :meth:`state_dict` / :meth:`load_state_dict` to resume a killed run."""

    name: str = ""
    #: the budget metrics this generator can steer towards (checked before any training)
    budget_metrics: tuple[str, ...] = BUDGET_METRICS

    @abc.abstractmethod
    def initial_tasks(self, space: SearchSpace) -> Sequence[Task]:
        """The first tasks to run (often one)."""

    @abc.abstractmethod
    def next_tasks(self, result: TaskResult) -> Sequence[Task]:
        """Tasks to run after ``result``; an empty sequence ends the search."""

    def state_dict(self) -> dict[str, Any]:
        """Plain-JSON state needed to continue after a kill (random generator states included)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        del state  # stateless by default
