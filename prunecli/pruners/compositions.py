"""Distiller's per-tensor pruners as engine compositions, one registry entry per class.

Each entry names its class's parts on the engine's axes: a target (single weights, or the
group type of a structure threshold), a metric (magnitude, or a threshold criterion), a
per-tensor rule (level, threshold or splice, :data:`prunecli.engine.allocation.TENSOR_RULES`) and
a per-tensor schedule (:mod:`prunecli.engine.schedules`). The entry's builder takes the class's
YAML arguments (declared in :mod:`prunecli.schedule.catalog`; a test checks the two agree) and
checks what the schema cannot. The masks are bit-identical to Distiller's classes (the
Distiller examples' fingerprints and ``tests/test_distiller_compositions.py`` pin them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from torch import nn

from prunecli.pruners.structure import check_reg_regims
from prunecli.schedule.vocabulary import SCHEDULE_THRESHOLD_CRITERIA, THRESHOLD_CRITERIA

if TYPE_CHECKING:
    from prunecli.engine.tensorwise import TensorwisePruner


def _engine(part: str) -> ModuleType:
    """One of the engine's modules, imported on first use: the engine imports this package's
    criteria and statistics, so importing it here at load time would be circular."""
    import importlib

    return importlib.import_module(f"prunecli.engine.{part}")


class Composition:
    """A Distiller class built from engine parts: ``build(**yaml_args)`` returns the parts.

    It stands where a class stood: ``Composition(name, model=None, **args)`` builds the pruner.
    """

    def __init__(self, class_name: str, build: Callable[..., dict[str, Any]]) -> None:
        self.__name__ = class_name
        self.__doc__ = build.__doc__
        self.build = build

    def __call__(self, name: str, model: nn.Module | None = None, **args: Any) -> TensorwisePruner:
        pruner = _engine("tensorwise").TensorwisePruner
        return pruner(name, preset=self.__name__, model=model, **self.build(**args))


COMPOSITIONS: dict[str, Composition] = {}


def composition(class_name: str) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    """Register a builder as the Distiller class ``class_name``."""

    def register(build: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        COMPOSITIONS[class_name] = Composition(class_name, build)
        return build

    return register


def _magnitude() -> dict[str, Any]:
    """Single weights scored by |w| (the element target's L1 of one weight)."""
    return {
        "target": _engine("targets").TARGETS.get("element")(),
        "metric": _engine("metrics").METRICS.get("l1")(),
    }


@composition("SparsityLevelParameterPruner")
def sparsity_level(levels: Mapping[str, float]) -> dict[str, Any]:
    """element x magnitude x level rule x a fixed level per tensor (``'*'`` as default)."""
    return {**_magnitude(), "rule": "level", "schedule": _engine("schedules").PerTensorLevels(levels)}


@composition("AutomatedGradualPruner")
def automated_gradual(
    initial_sparsity: float, final_sparsity: float, weights: Sequence[str] | str
) -> dict[str, Any]:
    """element x magnitude x level rule x AGP (Zhu & Gupta 2017), at epoch granularity."""
    schedule = _engine("schedules").AgpLevels(initial_sparsity, final_sparsity, "AutomatedGradualPruner")
    return {**_magnitude(), "rule": "level", "schedule": schedule, "weights": weights}


@composition("MagnitudeParameterPruner")
def magnitude(thresholds: Mapping[str, float]) -> dict[str, Any]:
    """element x magnitude x threshold rule x a fixed threshold per tensor (``'*'`` mandatory)."""
    if not isinstance(thresholds, Mapping) or "*" not in thresholds:
        raise ValueError("thresholds must be a mapping that includes a '*' entry")
    return {**_magnitude(), "rule": "threshold", "schedule": _engine("schedules").FixedThresholds(thresholds)}


@composition("SensitivityPruner")
def sensitivity(sensitivities: Mapping[str, float]) -> dict[str, Any]:
    """element x magnitude x threshold rule x ``s * std(w)``, the std frozen at the first prune."""
    return {
        **_magnitude(),
        "rule": "threshold",
        "schedule": _engine("schedules").StdThresholds(sensitivities),
    }


@composition("SplicingPruner")
def splicing(
    sensitivities: Mapping[str, float],
    low_thresh_mult: float,
    hi_thresh_mult: float,
    sensitivity_multiplier: float = 0,
) -> dict[str, Any]:
    """element x magnitude x splice rule x Dynamic Network Surgery's two thresholds."""
    schedule = _engine("schedules").SplicingBands(
        sensitivities, low_thresh_mult, hi_thresh_mult, sensitivity_multiplier, "SplicingPruner"
    )
    return {**_magnitude(), "rule": "splice", "schedule": schedule}


@composition("BaiduRNNPruner")
def baidu_rnn(
    q: float, ramp_epoch_offset: int, ramp_slope_mult: float, weights: Sequence[str]
) -> dict[str, Any]:
    """element x magnitude x threshold rule x Narang et al.'s two-slope threshold ramp."""
    schedule = _engine("schedules").BaiduRamp(q, ramp_epoch_offset, ramp_slope_mult, "BaiduRNNPruner")
    return {**_magnitude(), "rule": "threshold", "schedule": schedule, "weights": list(weights)}


@composition("StructureParameterPruner")
def structure_threshold(reg_regims: Mapping[str, Sequence], threshold_criteria: str) -> dict[str, Any]:
    """group type's target x criterion metric (Max / Mean_Abs) x threshold rule x fixed thresholds."""
    if threshold_criteria not in SCHEDULE_THRESHOLD_CRITERIA:
        raise ValueError(f"threshold_criteria must be one of {list(SCHEDULE_THRESHOLD_CRITERIA)}")
    regims = check_reg_regims(reg_regims, structured=True)
    targets = {}
    for name, (_, group_type) in regims.items():
        try:
            targets[name] = _engine("targets").threshold_target(group_type)
        except ValueError:
            raise ValueError(f"reg_regims[{name!r}]: unknown group type {group_type!r}") from None
    return {
        "target": _engine("targets").TARGETS.get("element")(),
        "targets": targets,
        "metric": _engine("metrics").METRICS.get(THRESHOLD_CRITERIA[threshold_criteria])(),
        "rule": "threshold",
        "schedule": _engine("schedules").GroupThresholds(regims),
        "weights": list(regims),
    }
