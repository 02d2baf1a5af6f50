"""What the search generators share: a seeded random generator that survives a resume, the cost
model they allocate against, and task numbering.

A search generator is bound to a :class:`~prunecli.iterative.cost.CostModel` before its first task
(the scheduler does it from the model and the budget); unbound, it falls back to the search space's
linear shares. Everything it keeps is plain data, so :meth:`state_dict` is JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from prunecli.iterative.cost import CostModel, LayerInfo, ShareCost, budget_target
from prunecli.iterative.task import SearchSpace, StartFrom, Task, TaskGenerator


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The generator's state as JSON-safe data (PCG64's state is a few integers)."""
    return dict(rng.bit_generator.state)


def rng_from_state(state: Mapping[str, Any]) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = dict(state)
    return rng


def round_levels(levels: Mapping[str, float]) -> dict[str, float]:
    """Plain floats (JSON round-trips them exactly)."""
    return {name: float(value) for name, value in levels.items()}


class SearchGenerator(TaskGenerator):
    """Base of the generators that search an allocation: seed, cost model, task numbers."""

    def __init__(
        self, *, seed: int = 0, cost: CostModel | None = None, layers: Sequence[LayerInfo] | None = None
    ):
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.cost = cost
        self.layers = list(layers) if layers is not None else None
        self.space: SearchSpace | None = None
        self.next_index = 0

    def bind(
        self, cost: CostModel | None = None, layers: Sequence[LayerInfo] | None = None
    ) -> SearchGenerator:
        """Give the generator the model's facts: how to predict a budget, and the layers' shapes
        (the scheduler calls it before the first task and again before resuming)."""
        if cost is not None:
            self.cost = cost
        if layers is not None:
            self.layers = list(layers)
        return self

    # --------------------------------------------------------------------------- helpers
    def start(self, space: SearchSpace) -> None:
        self.space = space
        if self.cost is None:
            self.cost = ShareCost.from_space(space)

    @property
    def names(self) -> list[str]:
        assert self.space is not None
        return sorted(self.space.shares)

    @property
    def target(self) -> float:
        assert self.space is not None and self.cost is not None
        return budget_target(self.space, self.cost)

    def make_task(
        self,
        levels: Mapping[str, float],
        *,
        note: str,
        finetune: bool,
        start_from: StartFrom = "dense",
        extra: Mapping[str, Any] | None = None,
    ) -> Task:
        task = Task(
            index=self.next_index,
            levels=round_levels(levels),
            start_from=start_from,
            finetune=finetune,
            note=note,
            extra=dict(extra or {}),
        )
        self.next_index += 1
        return task

    def predicted(self, levels: Mapping[str, float]) -> float:
        assert self.cost is not None
        return self.cost.predict(levels)

    # --------------------------------------------------------------------------- resume
    def base_state(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "rng": rng_state(self.rng),
            "next_index": self.next_index,
            "space": None
            if self.space is None
            else {
                "shares": dict(self.space.shares),
                "budget": None
                if self.space.budget is None
                else [self.space.budget.metric, self.space.budget.value],
                "max_level": self.space.max_level,
                "iterations": self.space.iterations,
            },
        }

    def load_base_state(self, state: Mapping[str, Any]) -> None:
        from prunecli.iterative.task import Budget, Measurements

        self.seed = int(state["seed"])
        self.rng = rng_from_state(state["rng"])
        self.next_index = int(state["next_index"])
        space = state.get("space")
        if space is not None:
            budget = Budget(*space["budget"]) if space["budget"] else None
            self.start(
                SearchSpace(
                    shares=dict(space["shares"]),
                    budget=budget,
                    dense=Measurements(),
                    max_level=float(space["max_level"]),
                    iterations=int(space["iterations"]),
                )
            )
