"""Schedules: *when* and *how fast*. A schedule maps training progress to the level asked for now.

Progress runs from 0 at the first pruning event to 1 at the last one, counted in epochs (the
policy's ``starting_epoch``/``ending_epoch``/``frequency``, as Distiller counts AGP) or in
steps when ``every_steps`` is set (the masks are then recomputed every k training steps).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prunecli.engine.registry import Registry


class Schedule:
    """Base class: ``level(progress)`` for progress in [0, 1]."""

    kind: str = ""

    def __init__(self, initial: float = 0.0, every_steps: int = 0) -> None:
        self.initial = float(initial)
        self.every_steps = int(every_steps)

    def level(self, progress: float, final: float) -> float:
        raise NotImplementedError

    def progress(self, meta: Mapping[str, Any]) -> float:
        """Where training stands between the first and the last pruning event (clamped to [0, 1])."""
        start, end, freq = meta["starting_epoch"], meta["ending_epoch"], meta.get("frequency")
        if self.every_steps and meta.get("steps_per_epoch"):
            per_epoch = int(meta["steps_per_epoch"])
            step = meta.get("global_step", meta["current_epoch"] * per_epoch)
            total = (end - start) * per_epoch
            last = ((total - 1) // self.every_steps) * self.every_steps
            done = step - start * per_epoch
        else:
            last = ((end - start - 1) // freq) * freq if freq else end - 1 - start
            done = meta["current_epoch"] - start
        if last <= 0:
            return 1.0
        return min(max(done / last, 0.0), 1.0)


SCHEDULES: Registry[Callable[..., Schedule]] = Registry("schedule")


@SCHEDULES.register("oneshot")
class OneShot(Schedule):
    """The final level at the first pruning event."""

    kind = "oneshot"

    def level(self, progress, final):
        return final


@SCHEDULES.register("linear")
class Linear(Schedule):
    """Equal steps from ``initial`` to the final level."""

    kind = "linear"

    def level(self, progress, final):
        return self.initial + (final - self.initial) * progress


@SCHEDULES.register("agp")
class AGP(Schedule):
    """Automated gradual pruning (Zhu & Gupta 2017): ``s_f + (s_i - s_f) (1 - t/T)^3``."""

    kind = "agp"

    def level(self, progress, final):
        return final + (self.initial - final) * (1.0 - progress) ** 3


@SCHEDULES.register("exponential")
class Exponential(Schedule):
    """Each event removes the same fraction of what is left: ``1 - (1 - s)^(t/T)`` (from ``initial``)."""

    kind = "exponential"

    def level(self, progress, final):
        kept = (1.0 - self.initial) * ((1.0 - final) / (1.0 - self.initial)) ** progress
        return 1.0 - kept


def build_schedule(spec: Mapping[str, Any]) -> Schedule:
    options = {k: v for k, v in spec.items() if k != "kind"}
    return SCHEDULES.get(str(spec["kind"]))(**options)
