"""Distiller's regularizers, keyed by class name (the YAML ``class:`` value)."""

from __future__ import annotations

from prunecli.regularizers.base import EPSILON, Regularizer
from prunecli.regularizers.group import GroupLassoRegularizer, GroupVarianceRegularizer, channels_l2
from prunecli.regularizers.l1 import L1Regularizer

REGULARIZERS: dict[str, type[Regularizer]] = {
    cls.__name__: cls for cls in (L1Regularizer, GroupLassoRegularizer, GroupVarianceRegularizer)
}

__all__ = [
    "EPSILON",
    "REGULARIZERS",
    "GroupLassoRegularizer",
    "GroupVarianceRegularizer",
    "L1Regularizer",
    "Regularizer",
    "channels_l2",
]
