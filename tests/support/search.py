"""Driving a task generator with synthetic results: no model, a score computed from the levels."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prunecli.iterative.task import Budget, Measurements, SearchSpace, Task, TaskGenerator, TaskResult

#: four tensors with unequal shares of the budgeted quantity (sums to 1)
SHARES: dict[str, float] = {"a.weight": 0.1, "b.weight": 0.3, "c.weight": 0.4, "d.weight": 0.2}


def space(value: float = 0.25, metric: str = "macs", max_level: float = 0.9) -> SearchSpace:
    return SearchSpace(
        shares=dict(SHARES), budget=Budget(metric, value), dense=Measurements(), max_level=max_level
    )


def quadratic_score(levels: Mapping[str, float]) -> float:
    """Higher for gentler allocations; the same for any caller (an evaluator stand-in)."""
    return 1.0 - sum(v * v for v in levels.values()) / max(len(levels), 1)


def result_for(task: Task, score: float) -> TaskResult:
    return TaskResult(
        task=task, score=score, measured=Measurements(), levels=dict(task.levels), meets_budget=True
    )


def drive(
    generator: TaskGenerator,
    search_space: SearchSpace,
    score: Callable[[Mapping[str, float]], float] = quadratic_score,
    limit: int = 500,
) -> list[Task]:
    """Run the generator's queue to its end (or ``limit`` tasks); every task it produced, in order."""
    queue = list(generator.initial_tasks(search_space))
    done: list[Task] = []
    while queue and len(done) < limit:
        task = queue.pop(0)
        done.append(task)
        queue.extend(generator.next_tasks(result_for(task, score(task.levels))))
    return done
