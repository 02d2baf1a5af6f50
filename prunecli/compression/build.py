"""Turn a parsed :class:`~prunecli.schedule.model.Schedule` into a ready :class:`CompressionScheduler`.

Mirrors Distiller's ``dict_config``: components are built per section from registries keyed by
Distiller class name, YAML keys must be constructor arguments, policies are added in
declaration order and LR policies after all others. Every problem is reported at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from prunecli.compression.batchnorm import BatchNormFolder
from prunecli.compression.policies import (
    PRUNING_POLICY_ARGS,
    REGULARIZATION_POLICY_ARGS,
    LRPolicy,
    PruningPolicy,
    RegularizationPolicy,
    ThinningPolicy,
)
from prunecli.compression.scheduler import CompressionScheduler
from prunecli.engine.targets import Unit
from prunecli.errors import GraphError, ProblemCollector, ScheduleError
from prunecli.lr import LR_SCHEDULERS
from prunecli.pruners import PRUNERS
from prunecli.pruners.agp import agp_span
from prunecli.regularizers import REGULARIZERS
from prunecli.schedule.catalog import lookup
from prunecli.schedule.model import Component, Policy, Schedule
from prunecli.schedule.names import WILDCARD
from prunecli.schedule.native import NATIVE_CLASS
from prunecli.schedule.vocabulary import THINNING_CLASSES, parameter_names

#: extension class name -> how it is built
EXTENSIONS: dict[str, type] = dict.fromkeys(THINNING_CLASSES, ThinningPolicy)


def catalog_args(class_name: str) -> tuple[set[str], set[str]]:
    """(accepted YAML keys, required keys) of a class, from its one declaration in the catalog."""
    spec = lookup(class_name)
    if spec is None:
        return set(), set()
    return set(spec.schema.get("properties", {})), set(spec.schema.get("required", []))


#: schedule arguments of ranked structure pruners that are prunecli's own (not constructor arguments)
RUNTIME_ARGS = ("prune_normalized",)


def _check_args(comp: Component, accepted: set[str], required: set[str], problems: ProblemCollector) -> bool:
    ok = True
    for key in sorted(set(comp.args) - accepted):
        problems.add(
            f"{comp.class_name} ({comp.instance}) does not accept argument {key!r}",
            comp.arg_locations.get(key, comp.location),
            f"valid arguments: {', '.join(sorted(accepted))}",
        )
        ok = False
    for key in sorted(required - set(comp.args)):
        problems.add(
            f"{comp.class_name} ({comp.instance}) is missing argument {key!r}",
            comp.location,
            f"add '{key}:' under {comp.instance}",
        )
        ok = False
    return ok


def _param_names_of(obj: Any, comp: Component) -> list[str]:
    names = getattr(obj, "params_names", None)
    if names is not None:
        return list(names)
    return [n for n in parameter_names(comp) if n != WILDCARD]


def _build_native(
    comp: Component, model: nn.Module, example_input: Any, problems: ProblemCollector
) -> Any | None:
    """A native entry through the engine; refusals name the entry and the fix, before training."""
    from prunecli.engine.compile import AxisProblem, build_engine_pruner
    from prunecli.engine.pruner import EngineError
    from prunecli.engine.registry import RegistryError

    try:
        return build_engine_pruner(comp.instance, comp.args, model, example_input)
    except AxisProblem as exc:
        key = exc.path[0] if exc.path else None
        problems.add(f"{comp.instance}: {exc.message}", comp.arg_locations.get(key, comp.location), exc.hint)
    except RegistryError as exc:
        problems.add(f"{comp.instance}: {exc.message}", comp.location, exc.hint)
    except EngineError as exc:
        key = exc.key if exc.key in comp.args else "weights"
        problems.add(f"{comp.instance}: {exc.message}", comp.arg_locations.get(key, comp.location), exc.hint)
    return None


def check_native_pruners(schedule: Schedule, model: nn.Module, example_input: Any = None) -> None:
    """Build every native entry for ``model`` without training; ScheduleError lists what cannot work.

    ``prunecli validate --model`` runs this so combinations a model rules out (N:M on a tensor
    whose input dimension is not a multiple of M, heads on a layer without heads, activation
    metrics on tensors no forward pass reaches) are reported before anything runs.
    """
    problems = ProblemCollector()
    for comp in schedule.components.get("pruners", {}).values():
        if comp.class_name == NATIVE_CLASS:
            _build_native(comp, model, example_input, problems)
    problems.raise_if_any(ScheduleError, "the schedule cannot be applied to this model")


def check_quantizers(schedule: Schedule, model: nn.Module) -> None:
    """Build the schedule's quantizer for ``model`` without attaching it; ScheduleError lists what
    cannot work (override patterns matching no module, a statistics file for another model)."""
    problems = ProblemCollector()
    for comp in schedule.components.get("quantizers", {}).values():
        _build_quantizer(comp, schedule, model, None, problems)
    problems.raise_if_any(ScheduleError, "the schedule cannot be applied to this model")


def _build_component(
    comp: Component,
    registry: Mapping[str, Any],
    model: nn.Module,
    param_names: set[str],
    problems: ProblemCollector,
) -> Any | None:
    cls = _registered_class(comp, registry, problems)
    if cls is None:
        return None
    accepted, required = catalog_args(comp.class_name)
    args = dict(comp.args)
    ranked = getattr(cls, "ranked", False)
    runtime = {k: args.pop(k) for k in RUNTIME_ARGS if k in args and ranked}
    if not _check_args(comp, accepted | set(runtime), required, problems):
        return None
    try:
        obj = cls(name=comp.instance, model=model, **args)
        for key, value in runtime.items():
            setattr(obj, key, bool(value))
    except (TypeError, ValueError, KeyError) as exc:
        problems.add(
            f"{comp.class_name} ({comp.instance}): {exc}", comp.location, "fix this component's arguments"
        )
        return None
    unknown = [n for n in _param_names_of(obj, comp) if n not in param_names]
    if unknown:
        problems.add(
            f"{comp.instance} names parameters the model does not have: {', '.join(unknown[:5])}",
            comp.location,
            "use names from model.named_parameters() (run them through prunecli.schedule.names.resolve_names)",
        )
        return None
    _check_leader(comp, obj, model, problems)
    return obj


def _check_leader(comp: Component, pruner: Any, model: nn.Module, problems: ProblemCollector) -> None:
    """Leader groups share one binary map, so every member needs the leader's structure count."""
    if getattr(pruner, "group_dependency", None) != "Leader":
        return
    params = dict(model.named_parameters())
    counts = {}
    for name in pruner.params_names:
        unit, tensor = Unit(name, (name,)), {name: params[name]}
        try:
            pruner.target.check(unit, tensor)
            counts[name] = pruner.target.count(unit, tensor)
        except ValueError as exc:
            problems.add(
                f"{comp.instance}: {name}: {exc}", comp.location, "use a group_type that fits this tensor"
            )
            return
    leader = pruner.params_names[0]
    unequal = {n: c for n, c in counts.items() if c != counts[leader]}
    if unequal:
        problems.add(
            f"{comp.instance}: Leader {leader} has {counts[leader]} {pruner.group_type} structures but "
            + ", ".join(f"{n} has {c}" for n, c in unequal.items()),
            comp.arg_locations.get("weights", comp.location),
            "a Leader group may only list tensors with the same number of structures",
        )


def _build_lr_scheduler(comp: Component, optimizer: Any, problems: ProblemCollector) -> Any | None:
    cls = _registered_class(comp, LR_SCHEDULERS, problems)
    if cls is None:
        return None
    accepted, required = catalog_args(comp.class_name)
    if not _check_args(comp, accepted, required, problems):
        return None
    if optimizer is None:
        problems.add(f"lr_scheduler {comp.instance} needs an optimizer", comp.location, "pass the optimizer")
        return None
    try:
        return cls(optimizer, **comp.args)
    except (TypeError, ValueError, KeyError) as exc:
        problems.add(
            f"{comp.class_name} ({comp.instance}): {exc}", comp.location, "fix this scheduler's arguments"
        )
        return None


def _build_extension(comp: Component, example_input: Any, problems: ProblemCollector) -> Any | None:
    if comp.class_name not in EXTENSIONS:
        problems.add(
            f"unknown extension class {comp.class_name!r}",
            comp.location,
            f"use one of: {', '.join(sorted(EXTENSIONS))}",
        )
        return None
    accepted, required = catalog_args(comp.class_name)
    if not _check_args(comp, accepted, required, problems):
        return None
    if example_input is None:
        problems.add(
            f"extension {comp.instance} thins the model and needs an example input",
            comp.location,
            "pass example_input= to build_scheduler (a tensor shaped like one input batch)",
        )
        return None
    try:
        return ThinningPolicy(comp.instance, comp.args["thinning_func_str"], example_input)
    except ValueError as exc:
        problems.add(str(exc), comp.arg_locations.get("thinning_func_str", comp.location))
        return None


def _policy_problem(problems: ProblemCollector, policy: Policy, message: str, hint: str) -> None:
    problems.add(f"policy {policy.kind} {policy.instance!r}: {message}", policy.location, hint)


def _make_policy(
    policy: Policy, instance: Any, model: nn.Module, example_input: Any, problems: ProblemCollector
) -> Any | None:
    if policy.kind == "pruner":
        unknown = sorted(set(policy.args) - set(PRUNING_POLICY_ARGS))
        if unknown:
            _policy_problem(
                problems, policy, f"unknown args {unknown}", f"valid args: {sorted(PRUNING_POLICY_ARGS)}"
            )
            return None
        if (
            instance.follows_agp
            and agp_span(policy.starting_epoch, policy.ending_epoch, policy.frequency) <= 0
        ):
            _policy_problem(
                problems,
                policy,
                "AGP needs starting_epoch/ending_epoch/frequency with ending_epoch - starting_epoch - 1 >= frequency",
                "schedule AGP over a range such as starting_epoch: 0, ending_epoch: 10, frequency: 2",
            )
            return None
        folder = None
        if policy.args.get("fold_batchnorm"):
            folder = BatchNormFolder(model)
        try:
            return PruningPolicy(instance, policy.args, folder)
        except ValueError as exc:
            _policy_problem(problems, policy, str(exc), "fix the policy args")
            return None
    if policy.kind == "regularizer":
        unknown = sorted(set(policy.args) - set(REGULARIZATION_POLICY_ARGS))
        if unknown:
            _policy_problem(
                problems, policy, f"unknown args {unknown}", "regularizer policies accept only keep_mask"
            )
            return None
        return RegularizationPolicy(instance, **policy.args)
    if policy.kind == "lr_scheduler":
        return LRPolicy(instance, policy.instance)
    if policy.kind == "extension":
        return instance
    if policy.kind == "quantizer":
        from prunecli.quantization.policy import QuantizationPolicy

        return QuantizationPolicy(instance)
    return None


def _registered_class(comp: Component, registry: Mapping[str, Any], problems: ProblemCollector) -> Any | None:
    """The class a component names, or None with an "unknown class" problem listing the valid names."""
    cls = registry.get(comp.class_name)
    if cls is None:
        problems.add(
            f"unknown {comp.section[:-1]} class {comp.class_name!r}",
            comp.location,
            f"use one of: {', '.join(sorted(registry))}",
        )
    return cls


def _build_quantizer(
    comp: Component, schedule: Schedule, model: nn.Module, optimizer: Any, problems: ProblemCollector
) -> Any | None:
    """A quantizer from the catalog's arguments; a QuantizerError lands on the argument it is about."""
    from prunecli.quantization.quantizers import QuantizerError
    from prunecli.quantization.registry import QUANTIZERS

    cls = _registered_class(comp, QUANTIZERS, problems)
    if cls is None:
        return None
    accepted, required = catalog_args(comp.class_name)
    if not _check_args(comp, accepted, required, problems):
        return None
    try:
        return cls(name=comp.instance, model=model, optimizer=optimizer, **comp.args)
    except QuantizerError as exc:
        location = comp.arg_locations.get(exc.key[0], comp.location) if exc.key else comp.location
        if len(exc.key) > 1 and schedule.locate is not None:
            location = schedule.locate((*comp.yaml_path, *exc.key), key=not isinstance(exc.key[-1], int))
        problems.add(f"{comp.class_name} ({comp.instance}): {exc.message}", location, exc.hint)
    except (TypeError, ValueError) as exc:
        problems.add(
            f"{comp.class_name} ({comp.instance}): {exc}", comp.location, "fix this quantizer's arguments"
        )
    return None


def build_scheduler(
    schedule: Schedule,
    model: nn.Module,
    optimizer: Any,
    *,
    example_input: Any = None,
    auto_dependency: bool = False,
    dependency_graph: Any = None,
    steps_per_epoch: int | None = None,
    prune_normalized: bool = False,
    round_to: int = 1,
    narrow_heads: bool = False,
) -> CompressionScheduler:
    """Build every component and policy of ``schedule`` for ``model``; ScheduleError lists all problems.

    ``round_to`` (with ``auto_dependency``) rounds every coupled group's kept channel count up to a
    multiple of it, for pruners that set no ``round_to`` of their own.
    ``prune_normalized`` (implies ``auto_dependency``) lets coupled pruners mask channels that a
    LayerNorm/GroupNorm normalises; a pruner's own ``prune_normalized: true`` does so for it alone.
    A norm that cannot be sliced is reported here, before training. ``narrow_heads``: attention heads
    are coupled position by position (every head narrowed alike) instead of whole, for the pruners
    and for the schedule's thinning alike.
    """
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise ScheduleError(
            f"round_to must be an integer >= 1, got {round_to!r}", hint="pass --round-to 1 (off) or more"
        )
    problems = ProblemCollector()
    param_names = {name for name, _ in model.named_parameters()}
    built: dict[str, dict[str, Any]] = {}
    for instance, comp in schedule.components.get("pruners", {}).items():
        built.setdefault("pruners", {})[instance] = (
            _build_native(comp, model, example_input, problems)
            if comp.class_name == NATIVE_CLASS
            else _build_component(comp, PRUNERS, model, param_names, problems)
        )
    for instance, comp in schedule.components.get("regularizers", {}).items():
        built.setdefault("regularizers", {})[instance] = _build_component(
            comp, REGULARIZERS, model, param_names, problems
        )
    for instance, comp in schedule.components.get("extensions", {}).items():
        built.setdefault("extensions", {})[instance] = _build_extension(comp, example_input, problems)
    scheduler = CompressionScheduler(model)
    for instance, comp in schedule.components.get("quantizers", {}).items():
        built.setdefault("quantizers", {})[instance] = _build_quantizer(
            comp, schedule, model, optimizer, problems
        )
    quantizer = next((q for q in built.get("quantizers", {}).values() if q is not None), None)
    if quantizer is not None:
        from prunecli.quantization.policy import QuantizationStage

        scheduler.quantization = QuantizationStage(quantizer, scheduler.maskset, optimizer)
        if not quantizer.post_training:
            # as Distiller: prepared once, before the LR schedulers see the optimizer's groups
            scheduler.quantization.prepare()
    for instance, comp in schedule.components.get("lr_schedulers", {}).items():
        built.setdefault("lr_schedulers", {})[instance] = _build_lr_scheduler(comp, optimizer, problems)

    pruners = [p for p in built.get("pruners", {}).values() if p is not None]
    if auto_dependency or prune_normalized or any(getattr(p, "prune_normalized", False) for p in pruners):
        from prunecli.compression.coupling import couple_pruners

        try:
            couple_pruners(
                pruners,
                model,
                example_input,
                dependency_graph,
                round_to,
                prune_normalized=prune_normalized,
                narrow_heads=narrow_heads,
            )
        except ValueError as exc:
            problems.add(str(exc), None, "check the model can be traced, or run without auto_dependency")
        except GraphError as exc:
            problems.add(exc.message, exc.location, exc.hint)
        if prune_normalized or any(getattr(p, "prune_normalized", False) for p in pruners):
            for extension in built.get("extensions", {}).values():
                if isinstance(extension, ThinningPolicy):
                    extension.prune_normalized = True
    for extension in built.get("extensions", {}).values() if narrow_heads else ():
        if isinstance(extension, ThinningPolicy):
            extension.narrow_heads = True

    ordered = [p for p in schedule.policies if not p.is_lr] + [p for p in schedule.policies if p.is_lr]
    for policy in ordered:
        section = {
            "pruner": "pruners",
            "regularizer": "regularizers",
            "extension": "extensions",
            "lr_scheduler": "lr_schedulers",
            "quantizer": "quantizers",
        }[policy.kind]
        if policy.instance not in schedule.components.get(section, {}):
            _policy_problem(
                problems,
                policy,
                f"no {section[:-1]} instance named {policy.instance!r}",
                f"define it under {section}:",
            )
            continue
        instance = built.get(section, {}).get(policy.instance)
        if instance is None:
            continue  # its component already reported a problem
        runtime_policy = _make_policy(policy, instance, model, example_input, problems)
        if runtime_policy is None:
            continue
        key = f"{policy.order}:{policy.kind}:{policy.instance}"
        if policy.frequency is None:
            scheduler.add_policy(runtime_policy, epochs=policy.epochs, key=key)
        else:
            scheduler.add_policy(
                runtime_policy,
                starting_epoch=policy.starting_epoch,
                ending_epoch=policy.ending_epoch,
                frequency=policy.frequency,
                key=key,
            )
    if problems.problems and quantizer is not None:
        quantizer.detach()  # leave the caller's model as it was
    problems.raise_if_any(ScheduleError, "the schedule cannot be applied to this model")
    for _, policy in scheduler.policy_order:
        pruner = getattr(policy, "pruner", None)
        if pruner is not None:
            pruner.attach(model)
    return scheduler
