"""Every Distiller pruner, keyed by its Distiller class name (the YAML ``class:`` value)."""

from __future__ import annotations

from prunecli.pruners.agp import AutomatedGradualPruner
from prunecli.pruners.base import Pruner
from prunecli.pruners.element import (
    BaiduRNNPruner,
    MagnitudeParameterPruner,
    SensitivityPruner,
    SparsityLevelParameterPruner,
    SplicingPruner,
)
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
from prunecli.pruners.structure import StructureParameterPruner

PRUNERS: dict[str, type[Pruner]] = {
    cls.__name__: cls
    for cls in (
        AutomatedGradualPruner,
        MagnitudeParameterPruner,
        SensitivityPruner,
        SparsityLevelParameterPruner,
        SplicingPruner,
        BaiduRNNPruner,
        StructureParameterPruner,
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
}

__all__ = ["PRUNERS", "Pruner", "RankedStructurePruner", *PRUNERS]
