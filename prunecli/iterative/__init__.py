"""Iterative pruning: a task generator proposes per-tensor sparsities, the scheduler prunes, thins,
fine-tunes and evaluates each proposal, and hands the result back to the generator.

The shapes (:class:`Task`, :class:`TaskResult`, :class:`TaskGenerator`, :class:`Budget`) live in
:mod:`prunecli.iterative.task`; the loop that runs them lives beside it.
"""

from prunecli.iterative.task import Budget, Measurements, Task, TaskGenerator, TaskResult

__all__ = ["Budget", "Measurements", "Task", "TaskGenerator", "TaskResult"]
