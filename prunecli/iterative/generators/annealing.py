"""Simulated annealing over per-tensor levels (NNI's ``SimulatedAnnealingTaskGenerator``).

Each proposal is a full allocation that meets the budget: random sparsities, sorted so the
largest tensors get the highest levels, scaled until the predicted cost reaches the budget. The
next proposal perturbs the current one by a uniform step of ``perturbation_magnitude * T / T0``
and is scaled back onto the budget. A better score is always accepted; a worse one with
probability ``exp(-|delta| / T)`` (the Metropolis rule; a uniform number is drawn only then).
The temperature is multiplied by ``cool_down_rate`` after every evaluated proposal and the search
stops below ``stop_temperature``; the best allocation found is then fine-tuned as the final task.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prunecli.iterative.cost import CostModel, scale_to_budget
from prunecli.iterative.generators import GENERATORS
from prunecli.iterative.generators.search import SearchGenerator
from prunecli.iterative.task import SearchSpace, Task, TaskResult


def metropolis_accepts(
    current: float, candidate: float, temperature: float, rng: np.random.Generator
) -> bool:
    """Accept a better score always, a worse one with probability ``exp(-|delta| / T)``."""
    if candidate > current:
        return True
    return bool(rng.uniform(0.0, 1.0) < math.exp(-abs(candidate - current) / temperature))


@dataclass
class Frame:
    """Where proposals must land: the tensors, their sizes (for NNI's ordering), the cost model,
    the target cost, the per-tensor cap and (AutoCompress) the levels already reached."""

    names: Sequence[str]
    sizes: Mapping[str, float]
    cost: CostModel
    target: float
    max_level: float
    floor: Mapping[str, float] | None = None

    def fit(self, raw: Mapping[str, float]) -> dict[str, float]:
        return scale_to_budget(raw, self.cost, self.target, self.max_level, self.floor)


class Annealer:
    """The annealing state of one search: temperature, current allocation and score, best seen.

    Shared by :class:`SimulatedAnnealing` and AutoCompress (which anneals once per round).
    """

    def __init__(
        self,
        start_temperature: float = 100.0,
        stop_temperature: float = 20.0,
        cool_down_rate: float = 0.9,
        perturbation_magnitude: float = 0.35,
        sort_by_size: bool = True,
    ) -> None:
        if not 0 < cool_down_rate < 1:
            raise ValueError(f"cool_down_rate must lie in (0, 1), got {cool_down_rate}")
        if not 0 < stop_temperature < start_temperature:
            raise ValueError(
                f"need 0 < stop_temperature < start_temperature, got {stop_temperature} and {start_temperature}"
            )
        self.start_temperature = float(start_temperature)
        self.stop_temperature = float(stop_temperature)
        self.cool_down_rate = float(cool_down_rate)
        self.perturbation_magnitude = float(perturbation_magnitude)
        self.sort_by_size = sort_by_size
        self.reset()

    def reset(self) -> None:
        self.temperature = self.start_temperature
        self.current: dict[str, float] | None = None
        self.current_score: float | None = None
        self.pending: dict[str, float] | None = None
        self.best: dict[str, float] | None = None
        self.best_score: float | None = None
        #: one entry per evaluated proposal: [score, accepted, temperature when judged]
        self.history: list[list[Any]] = []

    # ------------------------------------------------------------------ proposals
    def _arrange(
        self, raw: Sequence[float], names: Sequence[str], sizes: Mapping[str, float]
    ) -> dict[str, float]:
        """Pair values with tensors: sorted ascending against tensors sorted by size (NNI's rule)."""
        if not self.sort_by_size:
            return dict(zip(names, (float(v) for v in raw)))
        order = sorted(names, key=lambda n: (sizes.get(n, 0.0), n))
        return dict(zip(order, sorted(float(v) for v in raw)))

    def first(self, frame: Frame, rng: np.random.Generator) -> dict[str, float]:
        """A random allocation meeting the frame's target (NNI draws from ``[0.05, 1)``)."""
        raw = rng.uniform(0.05, 1.0, len(frame.names))
        self.pending = frame.fit(self._arrange(raw, frame.names, frame.sizes))
        return self.pending

    def perturb(self, frame: Frame, rng: np.random.Generator) -> dict[str, float]:
        """The current allocation moved by a uniform step shrinking with the temperature."""
        assert self.current is not None
        magnitude = self.temperature / self.start_temperature * self.perturbation_magnitude
        step = rng.uniform(-magnitude, magnitude, len(frame.names))
        moved = [max(0.0, self.current[n] + float(d)) for n, d in zip(frame.names, step)]
        self.pending = frame.fit(self._arrange(moved, frame.names, frame.sizes))
        return self.pending

    # ------------------------------------------------------------------ judging
    def observe(self, score: float, rng: np.random.Generator) -> bool:
        """Judge the pending proposal; cool down; True while the search goes on."""
        assert self.pending is not None
        if self.current_score is None:
            accepted = True
        else:
            accepted = metropolis_accepts(self.current_score, score, self.temperature, rng)
        self.history.append([float(score), accepted, self.temperature])
        if accepted:
            self.current, self.current_score = dict(self.pending), float(score)
        if self.best_score is None or score > self.best_score:
            self.best, self.best_score = dict(self.pending), float(score)
        self.pending = None
        self.temperature *= self.cool_down_rate
        return self.temperature >= self.stop_temperature

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "current": self.current,
            "current_score": self.current_score,
            "pending": self.pending,
            "best": self.best,
            "best_score": self.best_score,
            "history": [list(h) for h in self.history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.temperature = float(state["temperature"])
        self.current = None if state["current"] is None else dict(state["current"])
        self.current_score = state["current_score"]
        self.pending = None if state["pending"] is None else dict(state["pending"])
        self.best = None if state["best"] is None else dict(state["best"])
        self.best_score = state["best_score"]
        self.history = [list(h) for h in state["history"]]


@GENERATORS.register("simulated_annealing")
class SimulatedAnnealing(SearchGenerator):
    """NNI's SimulatedAnnealing pruner as a task generator.

    Probes start from the dense model and are not fine-tuned unless ``finetune_probes``; their score
    is the evaluator's. When the temperature falls below ``stop_temperature`` the best allocation
    is run once more with fine-tuning (``final_finetune``) and the search ends.
    """

    name = "simulated_annealing"

    def __init__(
        self,
        start_temperature: float = 100.0,
        stop_temperature: float = 20.0,
        cool_down_rate: float = 0.9,
        perturbation_magnitude: float = 0.35,
        *,
        finetune_probes: bool = False,
        final_finetune: bool = True,
        sort_by_size: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        self.annealer = Annealer(
            start_temperature, stop_temperature, cool_down_rate, perturbation_magnitude, sort_by_size
        )
        self.finetune_probes = finetune_probes
        self.final_finetune = final_finetune
        self.finished = False

    def frame(self) -> Frame:
        assert self.space is not None and self.cost is not None
        return Frame(self.names, dict(self.space.shares), self.cost, self.target, self.space.max_level)

    def initial_tasks(self, space: SearchSpace) -> Sequence[Task]:
        self.start(space)
        return [self._probe(self.annealer.first(self.frame(), self.rng))]

    def _probe(self, levels: Mapping[str, float]) -> Task:
        return self.make_task(
            levels,
            note=f"SA T={self.annealer.temperature:.4g}, predicted {self.predicted(levels):.4g}",
            finetune=self.finetune_probes,
            extra={"role": "probe"},
        )

    def next_tasks(self, result: TaskResult) -> Sequence[Task]:
        assert self.space is not None and self.cost is not None
        if self.finished or result.task.extra.get("role") == "final":
            self.finished = True
            return []
        going_on = self.annealer.observe(result.score, self.rng)
        if going_on:
            return [self._probe(self.annealer.perturb(self.frame(), self.rng))]
        self.finished = not self.final_finetune
        if not self.final_finetune:
            return []
        assert self.annealer.best is not None
        return [
            self.make_task(
                self.annealer.best,
                note=f"SA best (score {self.annealer.best_score:.4g}), fine-tuned",
                finetune=True,
                extra={"role": "final"},
            )
        ]

    def state_dict(self) -> dict[str, Any]:
        return {**self.base_state(), "annealer": self.annealer.state_dict(), "finished": self.finished}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.load_base_state(state)
        self.annealer.load_state_dict(state["annealer"])
        self.finished = bool(state["finished"])
