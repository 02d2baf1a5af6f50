"""Schedules: *when* and *how fast*. A schedule maps training progress to the level asked for now.

Progress runs from 0 at the first pruning event to 1 at the last one, counted in epochs (the
policy's ``starting_epoch``/``ending_epoch``/``frequency``, as Distiller counts AGP) or in
steps when ``every_steps`` is set (the masks are then recomputed every k training steps).
With ``start_step``/``end_step`` the events are absolute training steps instead, as Intel
Neural Compressor counts them: one at ``start_step`` and every ``every_steps`` after it up to
``end_step``, whatever the epoch length; event k of K = (end - start) // every_steps has progress k/K.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from prunecli.engine.registry import Registry


class Schedule:
    """Base class: ``level(progress)`` for progress in [0, 1]."""

    kind: str = ""

    def __init__(
        self,
        initial: float = 0.0,
        every_steps: int = 0,
        start_step: int | None = None,
        end_step: int | None = None,
    ) -> None:
        self.initial = float(initial)
        self.every_steps = int(every_steps)
        if (start_step is None) != (end_step is None):
            raise ValueError("start_step and end_step go together")
        if start_step is not None and end_step is not None and not 0 <= int(start_step) <= int(end_step):
            raise ValueError(f"need 0 <= start_step <= end_step, got {start_step}, {end_step}")
        self.start_step = None if start_step is None else int(start_step)
        self.end_step = None if end_step is None else int(end_step)

    @property
    def windowed(self) -> bool:
        """Events at absolute steps ``start_step .. end_step`` (not tied to the policy's epochs)."""
        return self.start_step is not None

    def level(self, progress: float, final: float) -> float:
        raise NotImplementedError

    @staticmethod
    def current_step(meta: Mapping[str, Any]) -> int:
        """The global training step the hook is called for (0 before the first step of a run)."""
        if "global_step" in meta:
            return int(meta["global_step"])
        return int(meta.get("current_epoch", 0)) * int(meta.get("steps_per_epoch") or 0)

    def fires(self, meta: Mapping[str, Any]) -> bool:
        """Whether the masks are recomputed at this hook (always, unless the events are a step window)."""
        if not self.windowed:
            return True
        assert self.start_step is not None and self.end_step is not None
        step = self.current_step(meta)
        every = max(self.every_steps, 1)
        return self.start_step <= step <= self.end_step and (step - self.start_step) % every == 0

    def progress(self, meta: Mapping[str, Any]) -> float:
        """Where training stands between the first and the last pruning event (clamped to [0, 1])."""
        if self.windowed:
            assert self.start_step is not None and self.end_step is not None
            every = max(self.every_steps, 1)
            events = (self.end_step - self.start_step) // every
            if events <= 0:
                return 1.0
            done = (self.current_step(meta) - self.start_step) // every
            return min(max(done / events, 0.0), 1.0)
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


@SCHEDULES.register("cube")
class Cube(Schedule):
    """Neural Compressor's cube decay: ``s_i + (s_f - s_i) (t/T)^3`` (slow first, fast at the end;
    not AGP, whose cube runs the other way)."""

    kind = "cube"

    def level(self, progress, final):
        return self.initial + (final - self.initial) * progress**3


@SCHEDULES.register("cos")
class Cos(Schedule):
    """Neural Compressor's cos decay: ``s_i + (s_f - s_i) (1 - cos(t/T * pi/2))``."""

    kind = "cos"

    def level(self, progress, final):
        return self.initial + (final - self.initial) * (1.0 - math.cos(progress * math.pi / 2))


def build_schedule(spec: Mapping[str, Any]) -> Schedule:
    options = {k: v for k, v in spec.items() if k != "kind"}
    return SCHEDULES.get(str(spec["kind"]))(**options)
