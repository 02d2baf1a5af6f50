"""Build an :class:`~prunecli.engine.pruner.EnginePruner` from a native schedule entry.

:func:`axis_problems` checks an entry without a model (the schedule loader runs it, so
``prunecli validate`` reports unknown kinds and options with did-you-mean hints);
:func:`build_engine_pruner` builds the runtime objects for a model and refuses combinations
that cannot work on it, before any training step.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from prunecli.engine.allocation import ALLOCATIONS, build_allocation
from prunecli.engine.metrics import METRICS, build_metric
from prunecli.engine.objectives import OBJECTIVES, build_objective
from prunecli.engine.pruner import Admm, EngineError, EnginePruner
from prunecli.engine.registry import Registry, RegistryError, is_user_code, load_user_code
from prunecli.engine.schedules import SCHEDULES, build_schedule
from prunecli.engine.targets import TARGETS, MixedTarget, Target, TargetError, build_target
from prunecli.schedule.native import as_mapping, final_fraction, resolved_axes

REGISTRIES: dict[str, Registry[Any]] = {
    "target": TARGETS,
    "metric": METRICS,
    "allocation": ALLOCATIONS,
    "schedule": SCHEDULES,
    "objective": OBJECTIVES,
}
BUILDERS: dict[str, Callable[..., Any]] = {
    "target": build_target,
    "metric": build_metric,
    "allocation": build_allocation,
    "schedule": build_schedule,
    "objective": build_objective,
}


class AxisProblem(ValueError):
    """One located problem: ``path`` inside the entry (e.g. ``("target", "kind")``) and a hint."""

    def __init__(self, path: tuple[Any, ...], message: str, hint: str) -> None:
        super().__init__(message)
        self.path, self.message, self.hint = path, message, hint


def _options_of(factory: Any) -> list[str]:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return []
    return [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _build_axis(axis: str, spec: Mapping[str, Any], example_input: Any = None) -> Any:
    kind = str(spec["kind"])
    try:
        factory = REGISTRIES[axis].get(kind)
    except RegistryError as exc:
        raise AxisProblem((axis, "kind") if len(spec) > 1 else (axis,), exc.message, exc.hint) from None
    try:
        if axis == "target":
            return build_target(spec, example_input=example_input)
        return BUILDERS[axis](spec)
    except TypeError as exc:
        options = [o for o in _options_of(factory) if o not in ("example_input", "graph")]
        raise AxisProblem(
            (axis,),
            f"{axis} {kind}: {exc}",
            f"{axis} {kind} takes " + (", ".join(options) if options else "no options"),
        ) from None
    except (ValueError, TargetError, OSError) as exc:
        raise AxisProblem((axis,), f"{axis} {kind}: {exc}", f"fix the options of {axis} {kind}") from None


def axis_problems(args: Mapping[str, Any], *, load_user_code: bool = False) -> list[AxisProblem]:
    """Everything wrong with a native entry that can be known without the model.

    Without ``load_user_code`` (the schedule loader) no user code is imported: ``module:function``
    kinds, and names the entry's ``plugins`` may register, are checked when the pruner is built.
    """
    problems: list[AxisProblem] = []
    axes = resolved_axes(args)
    for axis in ("target", "metric"):
        if axis not in axes:
            problems.append(
                AxisProblem((), f"no {axis}", f"add '{axis}:' (or 'preset:' naming an algorithm)")
            )
    built: dict[str, Any] = {}
    for axis, spec in axes.items():
        if axis == "admm":
            continue
        if axis == "target" and spec.get("kind") == "coupled":
            continue  # needs the model; checked when built
        kind = str(spec.get("kind", ""))
        deferred = is_user_code(kind) or (args.get("plugins") and kind not in REGISTRIES[axis])
        if deferred and not load_user_code:
            continue
        try:
            built[axis] = _build_axis(axis, spec)
        except AxisProblem as problem:
            problems.append(problem)
    fraction = final_fraction(args)
    target = axes.get("target", {}).get("kind")
    if target == "n:m":
        if (
            "sparsity" in args
            or isinstance(args.get("objective"), Mapping)
            and "fraction" in args["objective"]
        ):
            problems.append(
                AxisProblem(
                    ("sparsity",) if "sparsity" in args else ("objective",),
                    "an N:M target fixes the sparsity at 1 - N/M",
                    "remove the sparsity (or objective fraction)",
                )
            )
    elif fraction is None:
        problems.append(
            AxisProblem(
                (),
                "no level to reach",
                "add 'sparsity: <fraction>' or 'objective: {kind: ..., fraction: ...}'",
            )
        )
    return problems


def build_engine_pruner(
    name: str, args: Mapping[str, Any], model: nn.Module, example_input: Any = None
) -> EnginePruner:
    """The runtime pruner of a native entry; AxisProblem or EngineError when it cannot apply.

    ``plugins`` (``package.module:function`` names) are called first, with no arguments, so user
    code can register metrics, targets or custom layers before the entry's names are looked up.
    """
    for plugin in args.get("plugins") or ():
        try:
            load_user_code(plugin)()
        except RegistryError as exc:
            raise AxisProblem(("plugins",), exc.message, exc.hint) from None
    problems = axis_problems(args, load_user_code=True)
    if problems:
        raise problems[0]
    axes = resolved_axes(args)
    built = {axis: _build_axis(axis, spec, example_input) for axis, spec in axes.items() if axis != "admm"}
    admm = Admm(**axes["admm"]) if "admm" in axes else None
    fraction = final_fraction(args)
    weights = args["weights"]
    target = built["target"]
    if isinstance(weights, Mapping):
        target = _mixed_target(weights, target, example_input)
        weights = list(weights)
    weights = [weights] if isinstance(weights, str) else list(weights)
    params = dict(model.named_parameters())
    if "heads" not in target.kinds():
        missing = [w for w in weights if w not in params]
        if missing:
            raise EngineError(f"the model has no parameter {', '.join(missing[:3])}")
    return EnginePruner(
        name,
        target=target,
        metric=built["metric"],
        allocation=built["allocation"],
        schedule=built["schedule"],
        objective=built["objective"],
        fraction=fraction if fraction is not None else 0.0,
        weights=weights,
        model=model,
        example_input=example_input,
        admm=admm,
    )


def _mixed_target(weights: Mapping[str, Any], default: Target, example_input: Any) -> Target:
    """``weights: {name: target or null}``: tensors grouped by target (null: the entry's target)."""
    parts: dict[str, tuple[Target, list[str]]] = {}
    for name, spec in weights.items():
        if spec is None:
            key, target = "", default
        else:
            mapping = as_mapping(spec)
            key = repr(sorted(mapping.items()))
            target = parts[key][0] if key in parts else _build_axis("target", mapping, example_input)
        parts.setdefault(key, (target, []))[1].append(name)
    if len(parts) == 1:
        return next(iter(parts.values()))[0]
    return MixedTarget(list(parts.values()))


def user_code_names(args: Mapping[str, Any]) -> list[str]:
    """The ``module:function`` names an entry uses (imported only when the pruner is built)."""
    return [spec["kind"] for spec in resolved_axes(args).values() if is_user_code(str(spec.get("kind", "")))]
