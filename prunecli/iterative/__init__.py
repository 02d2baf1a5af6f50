"""Iterative pruning: a task generator proposes per-tensor sparsities (or an overall goal), the
scheduler prunes, thins, fine-tunes and evaluates each proposal, and hands the result back to the
generator.

The shapes (:class:`Task`, :class:`TaskResult`, :class:`TaskGenerator`, :class:`Budget`) live in
:mod:`prunecli.iterative.task`; the loop in :mod:`prunecli.iterative.scheduler`; the generators, by
name, in :mod:`prunecli.iterative.generators`; the pruner in :mod:`prunecli.iterative.pruning`.
"""

from prunecli.iterative.generators import GENERATORS, build_generator
from prunecli.iterative.measure import LatencyOptions
from prunecli.iterative.pruning import LevelPruner
from prunecli.iterative.scheduler import BestResult, MaskEnforcer, PruningScheduler, Snapshot
from prunecli.iterative.task import Budget, Measurements, SearchSpace, Task, TaskGenerator, TaskResult

__all__ = [
    "GENERATORS",
    "BestResult",
    "Budget",
    "LatencyOptions",
    "LevelPruner",
    "MaskEnforcer",
    "Measurements",
    "PruningScheduler",
    "SearchSpace",
    "Snapshot",
    "Task",
    "TaskGenerator",
    "TaskResult",
    "build_generator",
]
