"""NetAdapt (Yang et al. 2018; NNI's ``NetAdaptPruner``): shrink one layer at a time.

Every iteration lowers the resource target by ``step`` (a fraction of the dense model's value of
the budgeted quantity: MACs, parameters, weights or milliseconds). For each searched tensor it
proposes one candidate: that tensor alone pruned just enough to reach the new target (or up to
``max_level`` when it cannot reach it alone), the others as accepted so far. Each candidate gets a short fine-tune (``short_term_epochs``) and is scored;
the best-scoring candidate becomes the accepted allocation. When the budget is met the accepted
allocation is fine-tuned once more (the long-term fine-tune) and the search ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prunecli.iterative.cost import level_for_target
from prunecli.iterative.generators import GENERATORS
from prunecli.iterative.generators.search import SearchGenerator
from prunecli.iterative.task import SearchSpace, Task, TaskResult


@GENERATORS.register("netadapt")
class NetAdapt(SearchGenerator):
    name = "netadapt"

    def __init__(
        self,
        step: float = 0.05,
        short_term_epochs: int = 1,
        *,
        final_finetune: bool = True,
        seed: int = 0,
    ) -> None:
        if not 0 < step < 1:
            raise ValueError(f"netadapt step must lie in (0, 1), got {step}")
        super().__init__(seed=seed)
        self.step = float(step)
        self.short_term_epochs = int(short_term_epochs)
        self.final_finetune = final_finetune
        self.accepted: dict[str, float] = {}
        self.iteration = 0
        #: task index -> (tensor, score) of this iteration's candidates; score None until back
        self.candidates: dict[int, list[Any]] = {}
        self.finished = False

    # ------------------------------------------------------------------ proposals
    def initial_tasks(self, space: SearchSpace) -> Sequence[Task]:
        self.start(space)
        self.accepted = {n: 0.0 for n in self.names}
        return self._iteration_tasks()

    def _iteration_target(self) -> float:
        assert self.cost is not None
        dense = self.cost.dense
        return max(self.target, self.predicted(self.accepted) - self.step * dense)

    def _iteration_tasks(self) -> list[Task]:
        assert self.space is not None and self.cost is not None
        if self.predicted(self.accepted) <= self.target + 1e-12:
            return self._final()
        self.iteration += 1
        goal = self._iteration_target()
        tasks: list[Task] = []
        self.candidates = {}
        for name in self.names:
            level = level_for_target(self.accepted, name, self.cost, goal, self.space.max_level)
            if level is None:  # this tensor alone cannot reach the goal: it goes as far as it may
                if self.accepted[name] >= self.space.max_level - 1e-12:
                    continue
                level = self.space.max_level
            levels = {**self.accepted, name: level}
            task = self.make_task(
                levels,
                note=f"NetAdapt it {self.iteration}: {name} -> {level:.3f} (target {goal:.4g})",
                finetune=self.short_term_epochs > 0,
                extra={"role": "candidate", "tensor": name, "epochs": self.short_term_epochs},
            )
            self.candidates[task.index] = [name, None, task.levels]
            tasks.append(task)
        if not tasks:
            raise ValueError(
                f"NetAdapt: every tensor is at max_level {self.space.max_level:g} and the predicted "
                f"{self.cost.metric} is {self.predicted(self.accepted):.4g}, above the budget; raise max_level"
            )
        return tasks

    def _final(self) -> list[Task]:
        self.finished = True
        if not self.final_finetune:
            return []
        return [
            self.make_task(
                self.accepted,
                note=f"NetAdapt final after {self.iteration} iterations, long-term fine-tune",
                finetune=True,
                extra={"role": "final"},
            )
        ]

    # ------------------------------------------------------------------ results
    def best_candidate(self) -> list[Any]:
        """The candidate with the highest score (ties: the lower task index)."""
        done = [(index, c) for index, c in self.candidates.items() if c[1] is not None]
        return max(done, key=lambda item: (item[1][1], -item[0]))[1]

    def next_tasks(self, result: TaskResult) -> Sequence[Task]:
        if result.task.extra.get("role") == "final" or self.finished:
            self.finished = True
            return []
        entry = self.candidates.get(result.task.index)
        if entry is None:
            return []
        entry[1] = float(result.score)
        if any(c[1] is None for c in self.candidates.values()):
            return []  # the rest of this iteration's candidates are still queued
        best = self.best_candidate()
        self.accepted = dict(best[2])
        return self._iteration_tasks()

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        return {
            **self.base_state(),
            "accepted": dict(self.accepted),
            "iteration": self.iteration,
            "candidates": {str(k): list(v) for k, v in self.candidates.items()},
            "finished": self.finished,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.load_base_state(state)
        self.accepted = dict(state["accepted"])
        self.iteration = int(state["iteration"])
        self.candidates = {int(k): list(v) for k, v in state["candidates"].items()}
        self.finished = bool(state["finished"])
