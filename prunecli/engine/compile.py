"""Build an :class:`~prunecli.engine.pruner.EnginePruner` from a native schedule entry.

:func:`axis_problems` checks an entry without a model (the schedule loader runs it, so
``prunecli validate`` reports unknown kinds and options with did-you-mean hints);
:func:`build_engine_pruner` builds the runtime objects for a model and refuses combinations
that cannot work on it, before any training step.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from jsonschema import Draft202012Validator
from torch import nn

from prunecli.engine.allocation import ALLOCATIONS, build_allocation
from prunecli.engine.metrics import METRICS, build_metric
from prunecli.engine.objectives import ENTRY_KEYS as OBJECTIVE_ENTRY_KEYS
from prunecli.engine.objectives import OBJECTIVES, build_objective
from prunecli.engine.pruner import Admm, EngineError, EnginePruner
from prunecli.engine.registry import Registry, RegistryError, is_user_code, load_user_code
from prunecli.engine.schedules import SCHEDULES, build_schedule
from prunecli.engine.targets import TARGETS, MixedTarget, Target, TargetError, build_target
from prunecli.schedule.checks import suggest
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
    """One located problem: ``path`` inside the entry (e.g. ``("target", "kind")``) and a hint;
    ``at_key``: the problem is the key at ``path`` itself (an unknown option), not its value."""

    def __init__(self, path: tuple[Any, ...], message: str, hint: str, at_key: bool = False) -> None:
        super().__init__(message)
        self.path, self.message, self.hint, self.at_key = path, message, hint, at_key


#: arguments the engine passes itself, never written in a schedule
_INJECTED = ("self", "example_input", "graph")
#: keys of an axis mapping that belong to the entry, not to the kind's constructor
_ENTRY_KEYS = {"objective": OBJECTIVE_ENTRY_KEYS}


def _json_type(hint: Any) -> dict[str, Any]:
    """The JSON Schema (with its ``x-expected`` wording) of one annotated constructor argument."""
    origin, members = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [_json_type(m) for m in members]
        if any(not o for o in options):
            return {}
        words = " or ".join(o["x-expected"] for o in options)
        return {"anyOf": options, "x-expected": words}
    if origin is Literal:
        return {"enum": list(members), "x-expected": "one of " + ", ".join(map(str, members))}
    if hint is type(None):
        return {"type": "null", "x-expected": "null"}
    if hint in _SCALARS:
        kind, one, many = _SCALARS[hint]
        return {"type": kind, "x-expected": one, "x-plural": many}
    if origin in (list, tuple, Sequence) and members:
        item = _json_type(members[0])
        if "x-plural" in item:
            return {"type": "array", "items": item, "x-expected": f"a list of {item['x-plural']}"}
    return {}


#: annotation -> (JSON type, one value, several values) in messages
_SCALARS: dict[Any, tuple[str, str, str]] = {
    bool: ("boolean", "true or false", "booleans"),
    int: ("integer", "an integer", "integers"),
    float: ("number", "a number", "numbers"),
    str: ("string", "a text", "texts"),
}


def options_schema(factory: Any) -> dict[str, Any] | None:
    """The JSON Schema of an axis kind's options, read from its constructor's annotated signature
    (the one place they are declared); ``None`` for a factory that is not a class (a user's row
    function, whose arguments are not options) or that takes options it does not name."""
    if not isinstance(factory, type):
        return None
    try:
        signature = inspect.signature(factory)
        hints = typing.get_type_hints(factory.__init__)
    except (TypeError, ValueError, NameError):
        return None
    properties: dict[str, Any] = {}
    required = []
    for name, param in signature.parameters.items():
        if name in _INJECTED:
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            return None
        properties[name] = _json_type(hints.get(name, Any))
        if param.default is param.empty:
            required.append(name)
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def option_problems(axis: str, spec: Mapping[str, Any], factory: Any) -> list[AxisProblem]:
    """Options of ``spec`` its kind does not take, or of the wrong type, each located on its key or value."""
    schema = options_schema(factory)
    if schema is None:
        return []
    kind = str(spec["kind"])
    options = {k: v for k, v in spec.items() if k not in ("kind", *_ENTRY_KEYS.get(axis, ()))}
    accepted = list(schema["properties"])
    takes = f"{axis} {kind} takes " + (", ".join(accepted) if accepted else "no options")
    problems = []
    for error in Draft202012Validator(schema).iter_errors(options):
        if error.validator == "additionalProperties":
            for name in error.instance:
                if name not in accepted:
                    message = f"{axis} {kind}: unknown option '{name}'{suggest(name, accepted)}"
                    problems.append(AxisProblem((axis, name), message, takes, at_key=True))
        elif error.validator == "required":
            missing = [n for n in error.validator_value if n not in options]
            problems.append(
                AxisProblem((axis,), f"{axis} {kind}: missing option {', '.join(missing)}", takes)
            )
        elif error.absolute_path:
            name = error.absolute_path[0]
            expected = schema["properties"][name].get("x-expected", "another value")
            problems.append(
                AxisProblem(
                    (axis, name),
                    f"{axis} {kind}: '{name}' must be {expected}, got {options[name]!r}",
                    f"correct the value of '{name}'",
                )
            )
    return problems


def _options_of(factory: Any) -> list[str]:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [n for n, p in params.items() if p.kind in kinds and n not in _INJECTED]


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
        options = _options_of(factory)
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
        deferred = _names_user_code(axis, kind) or (bool(args.get("plugins")) and kind not in REGISTRIES[axis])
        if deferred and not load_user_code:
            continue
        try:
            found = option_problems(axis, spec, REGISTRIES[axis].get(kind))
        except RegistryError:
            found = []  # the unknown kind is reported by _build_axis, with its did-you-mean
        if found:
            problems.extend(found)
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
    return [
        spec["kind"]
        for axis, spec in resolved_axes(args).items()
        if axis in REGISTRIES and _names_user_code(axis, str(spec.get("kind", "")))
    ]


def _names_user_code(axis: str, kind: str) -> bool:
    """``package.module:function`` that is not a registered name (``n:m`` is both in form)."""
    return is_user_code(kind) and kind not in REGISTRIES[axis]
