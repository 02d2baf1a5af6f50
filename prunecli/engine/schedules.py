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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from prunecli.engine.registry import Registry
from prunecli.pruners.agp import AgpMixin
from prunecli.pruners.base import require_meta, wildcard_lookup


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


# ------------------------------------------------------------------------------------------------
# Per-tensor schedules: Distiller's own pruners decide each tensor alone, when the policy asks for
# its mask. Their schedule says what that tensor is asked for now: a level (a fraction of its
# groups) or a threshold on the metric's scores; ``None`` leaves its mask alone.


class TensorSchedule:
    """Base class: ``amount(name, tensor, meta)`` for one tensor at one pruning event."""

    #: the amount follows the AGP curve, so its policy needs starting/ending epochs and a frequency
    follows_agp: bool = False
    #: the state keys a checkpoint stores (Distiller's attribute names, so old checkpoints load)
    state_keys: tuple[str, ...] = ()

    def amount(self, name: str, tensor: torch.Tensor, meta: Mapping[str, Any] | None) -> Any | None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.state_keys}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


class PerTensorLevels(TensorSchedule):
    """A fixed level per tensor (``'*'``: every other tensor); a level of 0 leaves the tensor alone.

    A pruning policy's ``levels`` argument replaces the table (Distiller's policy does the same).
    """

    def __init__(self, levels: Mapping[str, float]) -> None:
        self.levels = dict(levels)

    def amount(self, name, tensor, meta):
        return wildcard_lookup(self.levels, name) or None


class AgpLevels(AgpMixin, TensorSchedule):
    """Distiller's AGP level of the epoch (one level for every tensor; 0 leaves them alone)."""

    def __init__(self, initial_sparsity: float, final_sparsity: float, owner: str) -> None:
        self._init_agp(initial_sparsity, final_sparsity)
        self.owner = owner

    def amount(self, name, tensor, meta):
        return self.agp_target(meta, self.owner) or None


class FixedLevel(TensorSchedule):
    """One level for every tensor (a ranked pruner's ``desired_sparsity``; 0 leaves them alone)."""

    def __init__(self, level: float) -> None:
        self.level = level

    def amount(self, name, tensor, meta):
        return self.level or None


class RandomLevels(TensorSchedule):
    """A fresh level ``draw(low, high)`` for each tensor at each event (Distiller's random-level
    pruner draws from Python's ``random.uniform``, so a seeded run repeats)."""

    def __init__(self, low: float, high: float, draw: Callable[[float, float], float]) -> None:
        self.low, self.high, self.draw = low, high, draw

    def amount(self, name, tensor, meta):
        return self.draw(self.low, self.high) or None


class FixedThresholds(TensorSchedule):
    """A fixed threshold per tensor (``'*'``: every other tensor)."""

    def __init__(self, thresholds: Mapping[str, float]) -> None:
        self.thresholds = dict(thresholds)

    def amount(self, name, tensor, meta):
        return wildcard_lookup(self.thresholds, name)


class StdThresholds(TensorSchedule):
    """``s * std(w)`` (Han et al. 2015); each tensor's std is measured at its first prune, then frozen."""

    state_keys = ("stddev",)

    def __init__(self, sensitivities: Mapping[str, float]) -> None:
        self.sensitivities = dict(sensitivities)
        self.stddev: dict[str, float] = {}

    def amount(self, name, tensor, meta):
        sensitivity = wildcard_lookup(self.sensitivities, name)
        if sensitivity is None:
            return None
        if name not in self.stddev:
            self.stddev[name] = torch.std(tensor.detach()).item()
        return self.stddev[name] * sensitivity

    def state_dict(self):
        return {"stddev": dict(self.stddev)}


class SplicingBands(TensorSchedule):
    """Dynamic Network Surgery's two thresholds ``(mean|w| + std|w| * s) * mult`` (low, high).

    mean/std of |w| are frozen at each tensor's first prune; ``s`` grows by
    ``(epoch - starting_epoch) * sensitivity_multiplier + 1`` when the multiplier is set.
    """

    state_keys = ("stats",)

    def __init__(
        self,
        sensitivities: Mapping[str, float],
        low_thresh_mult: float,
        hi_thresh_mult: float,
        sensitivity_multiplier: float,
        owner: str,
    ) -> None:
        self.sensitivities = dict(sensitivities)
        self.low_thresh_mult, self.hi_thresh_mult = low_thresh_mult, hi_thresh_mult
        self.sensitivity_multiplier = sensitivity_multiplier
        self.owner = owner
        self.stats: dict[str, list[float]] = {}

    def amount(self, name, tensor, meta):
        sensitivity = wildcard_lookup(self.sensitivities, name)
        if sensitivity is None:
            return None
        if self.sensitivity_multiplier > 0:
            meta = require_meta(meta, self.owner, ("current_epoch", "starting_epoch"))
            sensitivity *= (meta["current_epoch"] - meta["starting_epoch"]) * self.sensitivity_multiplier + 1
        if name not in self.stats:
            with torch.no_grad():
                magnitude = tensor.detach().abs()
                self.stats[name] = [magnitude.mean().item(), torch.std(magnitude).item()]
        mean, std = self.stats[name]
        return (mean + std * sensitivity) * self.low_thresh_mult, (mean + std * sensitivity) * self.hi_thresh_mult

    def state_dict(self):
        return {"stats": {k: list(v) for k, v in self.stats.items()}}


class BaiduRamp(TensorSchedule):
    """Narang et al. (2017): a threshold growing with one slope, then a steeper one after a ramp epoch."""

    state_keys = ("start_slope", "ramp_slope")

    def __init__(self, q: float, ramp_epoch_offset: int, ramp_slope_mult: float, owner: str) -> None:
        self.q, self.ramp_epoch_offset, self.ramp_slope_mult = q, ramp_epoch_offset, ramp_slope_mult
        self.owner = owner
        self.start_slope: float | None = None
        self.ramp_slope: float | None = None

    def amount(self, name, tensor, meta):
        meta = require_meta(meta, self.owner)
        start, end, freq = meta["starting_epoch"], meta["ending_epoch"], meta["frequency"] or 1
        current = meta["current_epoch"]
        ramp_epoch = self.ramp_epoch_offset + start
        if self.start_slope is None:
            self.start_slope = (2 * self.q * freq) / (2 * (ramp_epoch - start) + 3 * (end - ramp_epoch))
            self.ramp_slope = self.start_slope * self.ramp_slope_mult
        if current < ramp_epoch:
            return self.start_slope * (current - start + 1) / freq
        return (
            self.start_slope * (ramp_epoch - start + 1) + self.ramp_slope * (current - ramp_epoch + 1)
        ) / freq


class GroupThresholds(TensorSchedule):
    """``reg_regims: {name: [threshold, group_type]}``: each named tensor's fixed threshold."""

    def __init__(self, reg_regims: Mapping[str, Sequence[Any]]) -> None:
        self.thresholds = {name: regim[0] for name, regim in reg_regims.items()}

    def amount(self, name, tensor, meta):
        return self.thresholds.get(name)
