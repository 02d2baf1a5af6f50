"""The pruning engine: target x metric x allocation x schedule x objective, composed per pruner.

Each axis is a registry of small classes (``TARGETS``, ``METRICS``, ``ALLOCATIONS``,
``SCHEDULES``, ``OBJECTIVES``); the native schedule syntax names one entry of each, and
:data:`prunecli.schedule.native.PRESETS` names NNI's algorithms as such combinations.
Distiller's classes decide one tensor at a time: :class:`TensorwisePruner` composes a target, a
metric, a per-tensor rule (:class:`TensorRule`) and a per-tensor schedule (:class:`TensorSchedule`),
and :mod:`prunecli.pruners.compositions` names each class as such a composition.
"""

from __future__ import annotations

from prunecli.engine.allocation import ALLOCATIONS, Allocation, Budget, Candidate, TensorRule
from prunecli.engine.compile import axis_problems, build_engine_pruner
from prunecli.engine.metrics import METRICS, Metric, ScoreContext, register_metric
from prunecli.engine.objectives import OBJECTIVES, Objective
from prunecli.engine.pruner import EngineError, EnginePruner
from prunecli.engine.schedules import SCHEDULES, Schedule, TensorSchedule
from prunecli.engine.targets import TARGETS, Target, TargetError, Unit
from prunecli.engine.tensorwise import TensorwisePruner
from prunecli.schedule.native import PRESETS

__all__ = [
    "ALLOCATIONS",
    "METRICS",
    "OBJECTIVES",
    "PRESETS",
    "SCHEDULES",
    "TARGETS",
    "Allocation",
    "Budget",
    "Candidate",
    "EngineError",
    "EnginePruner",
    "Metric",
    "Objective",
    "Schedule",
    "ScoreContext",
    "Target",
    "TargetError",
    "TensorRule",
    "TensorSchedule",
    "TensorwisePruner",
    "Unit",
    "axis_problems",
    "build_engine_pruner",
    "register_metric",
]
