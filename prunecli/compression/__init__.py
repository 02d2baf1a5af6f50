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


def compression_scheduler_from_yaml(
    path: str | os.PathLike, model: nn.Module, optimizer: Any, **kwargs: Any
) -> CompressionScheduler:
    """Load a Distiller schedule, resolve its parameter names against ``model`` and build the scheduler."""
    from prunecli.schedule import load_schedule
    from prunecli.schedule.names import resolve_names

    schedule = load_schedule(path)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    schedule = resolve_names(schedule, shapes)
    return build_scheduler(schedule, model, optimizer, **kwargs)


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
    "build_scheduler",
    "compression_scheduler_from_yaml",
]
