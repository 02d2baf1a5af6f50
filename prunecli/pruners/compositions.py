"""Every Distiller pruner as an engine composition, one registry entry per class.

Each entry names its class's parts on the engine's axes: a target (single weights, or the
structures of a group type), a metric (magnitude, a threshold criterion, a mean Lp norm, an
activation or gradient statistic, random draws), a per-tensor rule (level, threshold, splice,
ranking, :mod:`prunecli.engine.allocation`) and a per-tensor schedule
(:mod:`prunecli.engine.schedules`: fixed, AGP, random levels; thresholds). The entry's builder
takes the class's YAML arguments (declared in :mod:`prunecli.schedule.catalog`; a test checks
the two agree) and checks what the schema cannot. The masks are bit-identical to Distiller's
classes (the Distiller examples' fingerprints, ``tests/test_distiller_compositions.py`` and
``tests/test_distiller_ranked_compositions.py`` pin them).
"""

from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from torch import nn

from prunecli.pruners.structure import check_reg_regims
from prunecli.schedule.catalog import FILTER_GROUP_TYPES
from prunecli.schedule.vocabulary import (
    GROUP_TYPES,
    SCHEDULE_THRESHOLD_CRITERIA,
    THRESHOLD_CRITERIA,
    rounded_dims,
)

if TYPE_CHECKING:
    from prunecli.engine.tensorwise import TensorwisePruner


def _engine(part: str) -> ModuleType:
    """One of the engine's modules, imported on first use: the engine imports this package's
    criteria and statistics, so importing it here at load time would be circular."""
    import importlib

    return importlib.import_module(f"prunecli.engine.{part}")


class Composition:
    """A Distiller class built from engine parts: ``build(**yaml_args)`` returns the parts.

    It stands where a class stood: ``Composition(name, *args, model=None, **kwargs)`` builds the
    pruner (the class's arguments in its order, or by name).
    A builder that takes ``model`` gets the model too (to check its arguments against it).
    ``ranked``: the class ranks structures, so it takes prunecli's ``prune_normalized`` and
    ``auto_dependency`` couples it.
    """

    def __init__(self, class_name: str, build: Callable[..., dict[str, Any]], ranked: bool = False) -> None:
        self.__name__ = class_name
        self.__doc__ = build.__doc__
        self.build = build
        self.ranked = ranked
        self._takes_model = "model" in inspect.signature(build).parameters

    def __call__(self, name: str, *args: Any, model: nn.Module | None = None, **kwargs: Any) -> TensorwisePruner:
        pruner = _engine("tensorwise").TensorwisePruner
        if self._takes_model:
            kwargs["model"] = model
        return pruner(name, preset=self.__name__, model=model, **self.build(*args, **kwargs))


COMPOSITIONS: dict[str, Composition] = {}


def composition(
    class_name: str, ranked: bool = False
) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    """Register a builder as the Distiller class ``class_name``."""

    def register(build: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        COMPOSITIONS[class_name] = Composition(class_name, build, ranked)
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


# ------------------------------------------------------------------------------------------------
# Ranked structure pruners: group type's structures x metric x ranking rule x level schedule.


def check_round_to(round_to: int, group_type: str, widths: Mapping[str, int]) -> int:
    """``round_to`` must be a positive integer, apply to filters/channels, and fit every layer it rounds."""
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise ValueError(f"round_to must be an integer >= 1, got {round_to!r}")
    if round_to > 1 and group_type not in rounded_dims():
        raise ValueError(f"round_to applies to group_type {'/'.join(rounded_dims())}, not {group_type}")
    narrow = {name: width for name, width in widths.items() if width < round_to}
    if narrow:
        name, width = next(iter(narrow.items()))
        raise ValueError(
            f"round_to {round_to} is larger than {name}'s {width} {group_type.lower()}"
            + (f" (and {len(narrow) - 1} more layers)" if len(narrow) > 1 else "")
        )
    return round_to


def _checked_round_to(
    round_to: int, group_type: str, weights: Sequence[str] | str, model: nn.Module | None
) -> int:
    """``check_round_to`` against each listed layer's count along the dimension ``round_to`` rounds."""
    dim = rounded_dims().get(group_type)
    widths = {}
    if model is not None and dim is not None:
        params = dict(model.named_parameters())
        names = [weights] if isinstance(weights, str) else list(weights or [])
        widths = {n: params[n].size(dim) for n in names if n in params and params[n].dim() > dim}
    return check_round_to(round_to, group_type, widths)


def _ranked(
    group_type: str,
    weights: Sequence[str] | str,
    group_dependency: str | None,
    schedule: Any,
    metric: Any,
    rule: Any,
    *,
    allowed: Sequence[str] = tuple(name for name, g in GROUP_TYPES.items() if g.ranking is not None),
    block_shape: Sequence[int] | None = None,
    ranks: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The parts every ranked class shares: its group type's target, its weights, a Leader group."""
    if group_type not in allowed:
        raise ValueError(f"group_type {group_type!r} is not supported here; use one of {list(allowed)}")
    if group_dependency not in (None, "Leader"):
        raise ValueError(f"group_dependency must be 'Leader' or absent, got {group_dependency!r}")
    names = [weights] if isinstance(weights, str) else list(weights)
    if not names:
        raise ValueError("weights must list at least one parameter")
    target = _engine("targets").ranking_target(group_type, block_shape)
    if ranks is not None:
        target.ranks = frozenset(ranks)
    return {
        "target": target,
        "metric": metric,
        "rule": rule,
        "schedule": schedule,
        "weights": names,
        "group_type": group_type,
        "leader": group_dependency == "Leader",
    }


def _lp_parts(
    p: int,
    schedule: Any,
    group_type: str,
    weights: Sequence[str] | str,
    group_dependency: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    noise: float = 0.0,
    group_size: int = 1,
    round_to: int = 1,
    model: nn.Module | None = None,
) -> dict[str, Any]:
    """Structures ranked by their mean Lp norm (Blocks: plain Lp norm, ``int(fraction * n)`` of them)."""
    block_shape = None
    if group_type == "Blocks":
        if not kwargs or "block_shape" not in kwargs:
            raise ValueError("group_type Blocks needs kwargs: {block_shape: [repetitions, depth, 1, 1]}")
        block_shape = list(kwargs["block_shape"])
    round_to = _checked_round_to(round_to, group_type, weights, model)
    blocks = group_type == "Blocks"
    metric = _engine("metrics").METRICS.get(("l" if blocks else "mean_l") + str(p))()
    rule = _engine("allocation").RankRule(group_size, round_to, noise, "int" if blocks else "structures")
    return _ranked(group_type, weights, group_dependency, schedule, metric, rule, block_shape=block_shape)


def _filter_metric(kind: str) -> Any:
    """The per-filter score of a data-driven filter ranker."""
    metrics = _engine("metrics")
    if kind in ("apoz", "mean"):
        return metrics.ActivationRankingMetric(kind)
    if kind == "gradient":
        return metrics.GradientRankingMetric()
    return metrics.GlobalRandomMetric()


def _filter_parts(
    kind: str,
    schedule: Any,
    group_type: str,
    weights: Sequence[str] | str,
    group_dependency: str | None = None,
    round_to: int = 1,
    model: nn.Module | None = None,
) -> dict[str, Any]:
    """Filters of 4-D convolution weights x a per-filter score x keep the highest (Bernoulli: draws;
    its catalog entry offers no ``round_to``, which it would ignore)."""
    allocation = _engine("allocation")
    if kind == "bernoulli":
        metric, rule = _engine("metrics").GlobalRandomMetric(), allocation.BernoulliRule()
    else:
        round_to = _checked_round_to(round_to, group_type, weights, model)
        metric, rule = _filter_metric(kind), allocation.ScoreRankRule(round_to)
    return _ranked(
        group_type, weights, group_dependency, schedule, metric, rule, allowed=FILTER_GROUP_TYPES, ranks=(4,)
    )


def _level(name: str) -> inspect.Parameter:
    """A level argument (a sparsity) of a ranked class."""
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=float)


def _level_forms(class_name: str, parts: Callable[..., dict[str, Any]], doc: str) -> None:
    """Register a ranked class and its ``_AGP`` form from one ``parts(schedule, group_type, weights, ...)``.

    The class takes ``desired_sparsity`` after ``group_type`` (a fixed level); its ``_AGP`` form takes
    ``initial_sparsity, final_sparsity`` first (Distiller's argument orders). The family's other
    arguments are declared once, by ``parts``.
    """
    own = list(inspect.signature(parts).parameters.values())[1:]  # after the schedule
    fixed = inspect.Signature([own[0], _level("desired_sparsity"), *own[1:]])
    agp = inspect.Signature([_level("initial_sparsity"), _level("final_sparsity"), *own])

    def fixed_level(args: dict[str, Any]) -> Any:
        return _engine("schedules").FixedLevel(args.pop("desired_sparsity"))

    def agp_levels(args: dict[str, Any]) -> Any:
        initial, final = args.pop("initial_sparsity"), args.pop("final_sparsity")
        return _engine("schedules").AgpLevels(initial, final, class_name + "_AGP")

    for name, signature, schedule, when in (
        (class_name, fixed, fixed_level, "a fixed level"),
        (class_name + "_AGP", agp, agp_levels, "AGP (Zhu & Gupta 2017)"),
    ):
        composition(name, ranked=True)(_builder(parts, signature, schedule, f"{doc} x {when}."))


def _builder(
    parts: Callable[..., dict[str, Any]],
    signature: inspect.Signature,
    schedule: Callable[[dict[str, Any]], Any],
    doc: str,
) -> Callable[..., dict[str, Any]]:
    """A composition builder with ``signature``: its level arguments make the schedule, the rest go to ``parts``."""

    def build(*args: Any, **kwargs: Any) -> dict[str, Any]:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        return parts(schedule(values), **values)

    build.__signature__ = signature  # type: ignore[attr-defined]
    build.__doc__ = doc
    return build


for _p in (1, 2):
    _level_forms(
        f"L{_p}RankedStructureParameterPruner",
        functools.partial(_lp_parts, _p),
        f"group type's structures x mean L{_p} norm x ranking",
    )
for _class, _kind in (
    ("ActivationAPoZRankedFilterPruner", "apoz"),
    ("ActivationMeanRankedFilterPruner", "mean"),
    ("GradientRankedFilterPruner", "gradient"),
    ("RandomRankedFilterPruner", "random"),
    ("BernoulliFilterPruner", "bernoulli"),
):
    _level_forms(_class, functools.partial(_filter_parts, _kind), f"filters x {_kind} x keep the highest")


@composition("RandomLevelStructureParameterPruner", ranked=True)
def random_level(
    group_type: str,
    sparsity_range: Sequence[float],
    weights: Sequence[str] | str,
    group_dependency: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    model: nn.Module | None = None,
) -> dict[str, Any]:
    """group type's structures x mean L1 norm x ranking x a fresh ``uniform(low, high)`` level
    per tensor and event (DropFilter-like)."""
    if len(sparsity_range) != 2 or not 0 <= sparsity_range[0] <= sparsity_range[1] <= 1:
        raise ValueError(f"sparsity_range must be [low, high] within [0, 1], got {sparsity_range!r}")
    schedule = _engine("schedules").RandomLevels(*sparsity_range, draw=random.uniform)
    return _lp_parts(1, schedule, group_type, weights, group_dependency, kwargs, model=model)
