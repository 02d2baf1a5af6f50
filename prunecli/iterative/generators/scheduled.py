"""Generators that step towards the budget by a fixed formula: AGP, linear and lottery ticket.

Each proposes one task per iteration ``i = 1..T``: "keep ``r_i`` of the budgeted quantity" (a
:class:`~prunecli.iterative.task.Task` ``goal``), leaving the per-layer split to the pruner's
allocation, as NNI's ``AGPTaskGenerator`` / ``LinearTaskGenerator`` leave it to their pruner. With
``b`` the budget (e.g. ``macs <= 0.4``: b = 0.4) and ``s = 1 - b`` the fraction to remove:

* ``agp``: removed fraction ``s * (1 - (1 - i/T)**3)`` (Zhu & Gupta's cubic, NNI's AGP);
* ``linear``: removed fraction ``s * i/T``;
* ``lottery_ticket``: removed fraction ``1 - (1 - s)**(i/T)`` (the same share of what is left at
  every iteration), and the surviving weights are reset to their initial (or rewind-point)
  values before each fine-tuning, as in Frankle & Carbin's iterative magnitude pruning.

The last iteration's goal is the budget itself, so its result meets the budget whenever the
pruner reaches its goal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prunecli.iterative.generators import GENERATORS
from prunecli.iterative.task import (
    RATIO_METRICS,
    Budget,
    SearchSpace,
    StartFrom,
    Task,
    TaskGenerator,
    TaskResult,
)


class ScheduledGenerator(TaskGenerator):
    """One goal per iteration from :meth:`removed`; stops after ``iterations`` results."""

    budget_metrics = RATIO_METRICS
    start_from: StartFrom = "previous"

    def __init__(self, iterations: int | None = None) -> None:
        if iterations is not None and int(iterations) <= 0:
            raise ValueError(f"iterations must be a positive count, got {iterations}")
        self.iterations = iterations
        self.budget: Budget | None = None

    def removed(self, i: int, total: int, final: float) -> float:
        """Fraction of the budgeted quantity removed after iteration ``i`` of ``total``."""
        raise NotImplementedError

    def keep_at(self, i: int) -> float:
        """The keep ratio (the goal) of iteration ``i`` (1-based)."""
        assert self.budget is not None and self.iterations is not None
        return 1.0 - self.removed(i, self.iterations, 1.0 - self.budget.value)

    def _task(self, i: int) -> Task:
        assert self.budget is not None
        goal = Budget(self.budget.metric, self.keep_at(i))
        return Task(
            index=i - 1,
            levels={},
            goal=goal,
            start_from=self.start_from,
            note=f"{self.name} {i}/{self.iterations}: {goal.metric} <= {goal.value:.4f}",
        )

    def initial_tasks(self, space: SearchSpace) -> Sequence[Task]:
        if space.budget is None:
            raise ValueError(f"the {self.name} generator steps towards a budget; none was given")
        if space.budget.metric not in self.budget_metrics:
            raise ValueError(
                f"the {self.name} generator steps a ratio ({', '.join(self.budget_metrics)}), "
                f"not {space.budget.metric}"
            )
        self.budget = space.budget
        if self.iterations is None:
            self.iterations = space.iterations
        if self.iterations <= 0:
            raise ValueError(f"iterations must be a positive count, got {self.iterations}")
        return [self._task(1)]

    def next_tasks(self, result: TaskResult) -> Sequence[Task]:
        done = result.task.index + 1
        assert self.iterations is not None
        return [] if done >= self.iterations else [self._task(done + 1)]

    def state_dict(self) -> dict[str, Any]:
        return {"iterations": self.iterations, "budget": str(self.budget) if self.budget else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.iterations = state.get("iterations", self.iterations)
        budget = state.get("budget")
        self.budget = Budget.parse(budget) if budget else None


@GENERATORS.register("agp")
class AGPGenerator(ScheduledGenerator):
    """NNI's AGPTaskGenerator: the cubic ramp, most of the pruning early."""

    name = "agp"

    def removed(self, i: int, total: int, final: float) -> float:
        return final * (1.0 - (1.0 - i / total) ** 3)


@GENERATORS.register("linear")
class LinearGenerator(ScheduledGenerator):
    """NNI's LinearTaskGenerator: equal steps."""

    name = "linear"

    def removed(self, i: int, total: int, final: float) -> float:
        return final * i / total


@GENERATORS.register("lottery_ticket")
class LotteryTicketGenerator(ScheduledGenerator):
    """NNI's LotteryTicketTaskGenerator: prune the same share of what is left each iteration, then
    reset the survivors to their initial values (``reset_to: initial``) or to the rewind point
    (``reset_to: rewind``, the weights after ``rewind_epoch`` epochs of dense training)."""

    name = "lottery_ticket"

    def __init__(self, iterations: int | None = None, reset_to: str = "initial") -> None:
        super().__init__(iterations)
        if reset_to not in ("initial", "rewind"):
            raise ValueError(f"reset_to is 'initial' or 'rewind', got {reset_to!r}")
        self.start_from = "initial" if reset_to == "initial" else "rewind"

    def removed(self, i: int, total: int, final: float) -> float:
        return 1.0 - (1.0 - final) ** (i / total)
