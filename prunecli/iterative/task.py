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

#: where a task's model comes from: the previous result's compact model, the best result so far,
#: the dense model's initial weights with the previous masks (lottery ticket reset), or the dense model
StartFrom = Literal["previous", "best", "initial", "rewind", "dense"]

#: budget quantities; ratios are to the dense model, ``latency_ms`` is measured in milliseconds
BUDGET_METRICS: tuple[str, ...] = ("weights", "params", "macs", "latency_ms")

_BUDGET = re.compile(r"^\s*(?P<metric>[a-z_]+)\s*<=\s*(?P<value>[0-9.eE+-]+)\s*$")


@dataclass(frozen=True)
class Budget:
    """What the final model may cost: ``macs <= 0.4`` keeps at most 40 % of the dense MACs;
    ``latency_ms <= 3.0`` is an absolute, measured bound."""

    metric: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``"macs <= 0.4"`` -> ``Budget("macs", 0.4)``; raises ``ValueError`` naming the fix."""
        match = _BUDGET.match(text)
        if not match or match["metric"] not in BUDGET_METRICS:
            raise ValueError(
                f"budget {text!r} is not 'METRIC <= VALUE' with METRIC one of {', '.join(BUDGET_METRICS)}"
            )
        value = float(match["value"])
        if value <= 0 or (match["metric"] != "latency_ms" and value > 1):
            raise ValueError(f"budget {text!r}: a ratio budget lies in (0, 1], a latency budget is > 0")
        return cls(match["metric"], value)

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


@dataclass
class TaskResult:
    """What a task achieved, handed back to the generator."""

    task: Task
    #: the evaluator's score (higher is better), e.g. top-1 on the validation split
    score: float
    measured: Measurements
    #: the levels actually reached per tensor (can differ from the task's after thinning/rounding)
    levels: dict[str, float]
    meets_budget: bool
    #: the compact checkpoint of this result, when the scheduler keeps one
    checkpoint: str | None = None


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


class TaskGenerator(abc.ABC):
    """Proposes tasks. Subclasses implement two methods; the scheduler calls nothing else except
    :meth:`state_dict` / :meth:`load_state_dict` to resume a killed run."""

    name: str = ""

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
