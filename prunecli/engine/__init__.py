"""The pruning engine: target x metric x allocation x schedule x objective, composed per pruner.

Each axis is a registry of small classes (``TARGETS``, ``METRICS``, ``ALLOCATIONS``,
``SCHEDULES``, ``OBJECTIVES``); the native schedule syntax names one entry of each, and
:mod:`prunecli.engine.presets` names NNI's algorithms as such combinations.
"""

from __future__ import annotations

from prunecli.engine.allocation import ALLOCATIONS, Allocation, Budget, Candidate
from prunecli.engine.compile import axis_problems, build_engine_pruner
from prunecli.engine.metrics import METRICS, Metric, ScoreContext, register_metric
from prunecli.engine.objectives import OBJECTIVES, Objective
from prunecli.engine.pruner import EngineError, EnginePruner
from prunecli.engine.schedules import SCHEDULES, Schedule
from prunecli.engine.targets import TARGETS, Target, TargetError, Unit
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
    "Unit",
    "axis_problems",
    "build_engine_pruner",
    "register_metric",
]
