"""prunecli: Distiller-style scheduled pruning, automatic thinning and reports for PyTorch.

The public API is loaded lazily so that ``import prunecli`` stays cheap and the CLI starts fast.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

try:
    __version__ = metadata.version("prunecli")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.0.0+unknown"

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "load_schedule": "prunecli.schedule",
    "build_scheduler": "prunecli.compression",
    "CompressionScheduler": "prunecli.compression",
    "create_model": "prunecli.models",
    "load_dataset": "prunecli.data",
    "build_dependency_graph": "prunecli.graph",
    "thin_model": "prunecli.thinning",
    "save_checkpoint": "prunecli.checkpoint",
    "load_checkpoint": "prunecli.checkpoint",
    "load_model": "prunecli.checkpoint",
    "build_report": "prunecli.report.build",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'prunecli' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
