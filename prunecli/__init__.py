"""prunecli: Distiller-style scheduled pruning, automatic thinning and reports for PyTorch.

The public API is :mod:`prunecli.api`; this package re-exports exactly its names. They are
imported when first used (``import prunecli`` does not import torch, so the CLI starts fast);
type checkers and editors see them through the ``TYPE_CHECKING`` import below.
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prunecli.api import (
        Budget,
        CheckResult,
        CompactModel,
        CompressionScheduler,
        Conversion,
        LevelPruner,
        ModelInfo,
        Pruning,
        PruningScheduler,
        Schedule,
        SearchSpace,
        Task,
        TaskGenerator,
        TaskResult,
        ThinOptions,
        ThinSummary,
        WeightPruningConfig,
        build_compression,
        build_generator,
        check_schedule,
        convert_schedule,
        export_compact,
        load_model,
        load_schedule,
        prepare_compression,
        thin,
    )

try:
    __version__ = metadata.version("prunecli")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "Budget",
    "CheckResult",
    "CompactModel",
    "CompressionScheduler",
    "Conversion",
    "LevelPruner",
    "ModelInfo",
    "Pruning",
    "PruningScheduler",
    "Schedule",
    "SearchSpace",
    "Task",
    "TaskGenerator",
    "TaskResult",
    "ThinOptions",
    "ThinSummary",
    "WeightPruningConfig",
    "__version__",
    "build_compression",
    "build_generator",
    "check_schedule",
    "convert_schedule",
    "export_compact",
    "load_model",
    "load_schedule",
    "prepare_compression",
    "thin",
]


def __getattr__(name: str) -> Any:
    if name == "__version__" or name not in __all__:
        raise AttributeError(f"module 'prunecli' has no attribute {name!r}")
    from prunecli import api

    value = getattr(api, name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
