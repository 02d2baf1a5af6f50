"""Every Distiller pruner, keyed by its Distiller class name (the YAML ``class:`` value).

The per-tensor ones (levels, thresholds, surgery, Baidu, structure thresholds, element AGP) are
engine compositions (:mod:`prunecli.pruners.compositions`); the ranked ones are classes here.
"""

from __future__ import annotations

from collections.abc import Callable

from prunecli.pruners.base import Pruner
from prunecli.pruners.compositions import COMPOSITIONS
from prunecli.pruners.ranked import (
    ActivationAPoZRankedFilterPruner,
    ActivationAPoZRankedFilterPruner_AGP,
    ActivationMeanRankedFilterPruner,
    ActivationMeanRankedFilterPruner_AGP,
    BernoulliFilterPruner,
    BernoulliFilterPruner_AGP,
    GradientRankedFilterPruner,
    GradientRankedFilterPruner_AGP,
    L1RankedStructureParameterPruner,
    L1RankedStructureParameterPruner_AGP,
    L2RankedStructureParameterPruner,
    L2RankedStructureParameterPruner_AGP,
    RandomLevelStructureParameterPruner,
    RandomRankedFilterPruner,
    RandomRankedFilterPruner_AGP,
    RankedStructurePruner,
)

#: class name -> a factory ``(name, model=None, **yaml_args) -> Pruner``
PRUNERS: dict[str, Callable[..., Pruner]] = {
    **COMPOSITIONS,
    **{
        cls.__name__: cls
        for cls in (
            L1RankedStructureParameterPruner,
        L2RankedStructureParameterPruner,
        L1RankedStructureParameterPruner_AGP,
        L2RankedStructureParameterPruner_AGP,
        RandomLevelStructureParameterPruner,
        ActivationAPoZRankedFilterPruner,
        ActivationAPoZRankedFilterPruner_AGP,
        ActivationMeanRankedFilterPruner,
        ActivationMeanRankedFilterPruner_AGP,
        GradientRankedFilterPruner,
        GradientRankedFilterPruner_AGP,
        RandomRankedFilterPruner,
        RandomRankedFilterPruner_AGP,
        BernoulliFilterPruner,
            BernoulliFilterPruner_AGP,
        )
    },
}

__all__ = ["PRUNERS", "Pruner", "RankedStructurePruner", *(n for n in PRUNERS if n not in COMPOSITIONS)]
