"""AutoCompress (Liu et al. 2020; NNI's ``AutoCompressPruner``): simulated annealing chooses the
per-tensor levels of a round, ADMM prunes to them.

The budget is reached in ``rounds`` steps, as NNI's lottery-ticket-shaped schedule does: round
``r`` of ``R`` aims at ``dense * (budget / dense) ** (r / R)`` (for a ratio budget ``b`` that is
``b ** (r / R)``, i.e. sparsity ``1 - (1 - s) ** (r / R)``). Within a round, annealing probes
(unfine-tuned, scored by the evaluator) search allocations for the round's target that never undo
an earlier round (each tensor's level is at least what it already reached). The round's best
allocation is then reached with ADMM (``extra["pruner"] == "admm"``: ``admm_iterations`` rounds of
the fine-tuner with the penalty ``rho``, see :mod:`prunecli.iterative.admm`), pruned and
fine-tuned; its reached levels are the next round's floor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prunecli.iterative.generators import GENERATORS
from prunecli.iterative.generators.annealing import Annealer, Frame
from prunecli.iterative.generators.search import SearchGenerator
from prunecli.iterative.task import SearchSpace, Task, TaskResult


@GENERATORS.register("autocompress")
class AutoCompress(SearchGenerator):
    name = "autocompress"

    def __init__(
        self,
        rounds: int = 3,
        start_temperature: float = 100.0,
        stop_temperature: float = 20.0,
        cool_down_rate: float = 0.9,
        perturbation_magnitude: float = 0.35,
        rho: float = 1e-4,
        admm_iterations: int = 2,
        *,
        seed: int = 0,
    ) -> None:
        if rounds < 1:
            raise ValueError(f"autocompress needs rounds >= 1, got {rounds}")
        super().__init__(seed=seed)
        self.rounds = int(rounds)
        self.rho = float(rho)
        self.admm_iterations = int(admm_iterations)
        self.annealer = Annealer(start_temperature, stop_temperature, cool_down_rate, perturbation_magnitude)
        self.round = 1
        self.floor: dict[str, float] = {}
        self.finished = False

    def round_target(self, round_index: int) -> float:
        """The round's cost target: geometric steps from the dense value to the budget."""
        assert self.cost is not None
        dense = self.cost.dense
        return dense * (self.target / dense) ** (round_index / self.rounds)

    def frame(self) -> Frame:
        """This round's target, never below what earlier rounds reached."""
        assert self.space is not None and self.cost is not None
        return Frame(
            self.names,
            dict(self.space.shares),
            self.cost,
            self.round_target(self.round),
            self.space.max_level,
            self.floor,
        )

    def _probe(self, levels: Mapping[str, float]) -> Task:
        return self.make_task(
            levels,
            note=f"AutoCompress round {self.round}/{self.rounds} SA T={self.annealer.temperature:.4g}",
            finetune=False,
            extra={"role": "probe", "round": self.round},
        )

    def _first_probe(self) -> list[Task]:
        assert self.space is not None and self.cost is not None
        self.annealer.reset()
        return [self._probe(self.annealer.first(self.frame(), self.rng))]

    def initial_tasks(self, space: SearchSpace) -> Sequence[Task]:
        self.start(space)
        self.floor = {n: 0.0 for n in self.names}
        return self._first_probe()

    def next_tasks(self, result: TaskResult) -> Sequence[Task]:
        assert self.space is not None and self.cost is not None
        if self.finished:
            return []
        role = result.task.extra.get("role")
        if role == "admm":
            self.floor = {
                n: max(self.floor.get(n, 0.0), float(result.levels.get(n, lvl)))
                for n, lvl in result.task.levels.items()
            }
            if self.round >= self.rounds:
                self.finished = True
                return []
            self.round += 1
            return self._first_probe()
        if self.annealer.observe(result.score, self.rng):
            return [self._probe(self.annealer.perturb(self.frame(), self.rng))]
        assert self.annealer.best is not None
        return [
            self.make_task(
                self.annealer.best,
                note=f"AutoCompress round {self.round}/{self.rounds}: ADMM to the SA best, fine-tuned",
                finetune=True,
                extra={
                    "role": "admm",
                    "round": self.round,
                    "pruner": "admm",
                    "rho": self.rho,
                    "admm_iterations": self.admm_iterations,
                },
            )
        ]

    def state_dict(self) -> dict[str, Any]:
        return {
            **self.base_state(),
            "annealer": self.annealer.state_dict(),
            "round": self.round,
            "floor": dict(self.floor),
            "finished": self.finished,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.load_base_state(state)
        self.annealer.load_state_dict(state["annealer"])
        self.round = int(state["round"])
        self.floor = dict(state["floor"])
        self.finished = bool(state["finished"])
