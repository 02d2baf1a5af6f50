"""The compression runtime: Distiller's scheduler hooks, maskers and policies.

Typical use from a custom training loop::

    from prunecli.compression import compression_scheduler_from_yaml
    scheduler = compression_scheduler_from_yaml("schedule.yaml", model, optimizer)
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from prunecli.compression.build import build_scheduler
from prunecli.compression.masker import MaskSet, MasksView, ParameterMasker
from prunecli.compression.policies import (
    LRPolicy,
    PolicyLoss,
    PruningPolicy,
    RegularizationPolicy,
    ScheduledPolicy,
    ThinningPolicy,
)
from prunecli.compression.scheduler import CompressionScheduler
from prunecli.schedule.model import Schedule


def build_compression(
    schedule: Schedule | str | os.PathLike[str],
    model: nn.Module,
    optimizer: Any,
    *,
    example_input: Any = None,
    auto_dependency: bool = False,
    dependency_graph: Any = None,
    steps_per_epoch: int | None = None,
    round_to: int = 1,
    prune_normalized: bool = False,
    narrow_heads: bool = False,
) -> CompressionScheduler:
    """The compression scheduler of ``schedule`` (a loaded one, or a YAML path) for ``model``.

    Parameter names are resolved against ``model`` here (DataParallel ``module.`` prefixes,
    ``re:`` patterns, ``__ALL_PRUNABLE__``), so no caller can forget it; keyword arguments are
    those of :func:`prunecli.compression.build.build_scheduler`.
    """
    from prunecli.schedule import load_schedule
    from prunecli.schedule.names import module_classes, resolve_names

    if not isinstance(schedule, Schedule):
        schedule = load_schedule(schedule)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    return build_scheduler(
        resolve_names(schedule, shapes, module_classes(model)),
        model,
        optimizer,
        example_input=example_input,
        auto_dependency=auto_dependency,
        dependency_graph=dependency_graph,
        steps_per_epoch=steps_per_epoch,
        prune_normalized=prune_normalized,
        narrow_heads=narrow_heads,
        round_to=round_to,
    )


def compression_scheduler_from_yaml(
    path: str | os.PathLike[str], model: nn.Module, optimizer: Any, **kwargs: Any
) -> CompressionScheduler:
    """Distiller's name for :func:`build_compression` on a YAML file."""
    return build_compression(path, model, optimizer, **kwargs)


__all__ = [
    "CompressionScheduler",
    "LRPolicy",
    "MaskSet",
    "MasksView",
    "ParameterMasker",
    "PolicyLoss",
    "PruningPolicy",
    "RegularizationPolicy",
    "ScheduledPolicy",
    "ThinningPolicy",
    "build_compression",
    "build_scheduler",
    "compression_scheduler_from_yaml",
]
