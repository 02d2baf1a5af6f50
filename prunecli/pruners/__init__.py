"""Every Distiller pruner, keyed by its Distiller class name (the YAML ``class:`` value).

Each is an engine composition (:mod:`prunecli.pruners.compositions`): the class's arguments
choose a target, a metric, a per-tensor rule and a per-tensor schedule of :mod:`prunecli.engine`.
"""

from __future__ import annotations

from collections.abc import Callable

from prunecli.pruners.base import Pruner
from prunecli.pruners.compositions import COMPOSITIONS, Composition

#: class name -> a factory ``(name, model=None, **yaml_args) -> Pruner``
PRUNERS: dict[str, Callable[..., Pruner]] = dict(COMPOSITIONS)

__all__ = ["PRUNERS", "Composition", "Pruner", *PRUNERS]


def __getattr__(name: str) -> Callable[..., Pruner]:
    """``from prunecli.pruners import L1RankedStructureParameterPruner``: each class by its name."""
    if name in PRUNERS:
        return PRUNERS[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
