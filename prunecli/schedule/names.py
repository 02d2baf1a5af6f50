"""Match a schedule's parameter names against a real model's ``named_parameters()``.

Distiller compares names exactly, so a schedule written for a DataParallel model
(``module.conv1.weight``, or ``features.module.0.weight`` for AlexNet/VGG) silently prunes
nothing on an unwrapped one. Here every name is rewritten to the model's real name, with two
extensions: ``re:<regex>`` (full match), ``__ALL_PRUNABLE__`` (every weight the entry's
``group_type`` can prune: see :func:`all_prunable`) and module selections written by the other
schedule languages: ``ops:<regex>`` is the weight of every layer (2-D, 3-D or 4-D ``.weight``:
Linear and convolutions) whose *module* name the regex finds (``re.search``, Neural Compressor's
``op_names``), and ``ops-not:<regex>`` removes such layers from the list's selection
(``ops-not:__CLASSIFIER_HEAD__``: the model's classifier head, found as Neural Compressor finds it).
Unmatched names, group types that do not fit a tensor's rank, and Leader groups with
unequal structure counts are reported with the entry's position in the file.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any

from prunecli.errors import ProblemCollector, ScheduleError, SourceLocation

from .catalog import lookup
from .model import Component, Schedule
from .vocabulary import GROUP_TYPES, structure_dims

ALL_PRUNABLE = "__ALL_PRUNABLE__"
REGEX_PREFIX = "re:"
OPS_PREFIX = "ops:"
OPS_EXCLUDE_PREFIX = "ops-not:"
#: in an ``ops-not:`` entry: the model's classifier head (see ``_Matcher.classifier_head``)
CLASSIFIER_HEAD = "__CLASSIFIER_HEAD__"
#: the module classes ``ops:`` selects (Neural Compressor's Conv and Linear op types)
_LAYER_CLASS = re.compile(r"Linear|Conv")
WILDCARD = "*"

_MODULE_SEGMENT = re.compile(r"(^|\.)module\.")


def normalise(name: str) -> str:
    """Drop DataParallel's ``module.`` segments (``features.module.0`` -> ``features.0``)."""
    return _MODULE_SEGMENT.sub(r"\1", name)


def all_prunable(shapes: Mapping[str, tuple[int, ...]], group_type: str | None) -> list[str]:
    """What ``__ALL_PRUNABLE__`` stands for, in parameter order.

    Without a group type (element-wise pruners, L1 strengths) every 2-D and 4-D weight. With one,
    the weights whose rank it fits, so "prune half the filters of every layer" can be written
    for any model:

    * Filters, 3D, Channels, 2D, Blocks (convolution structures): convolution weights (3-D or
      4-D), never a Linear layer's;
    * Channels also leaves out the first convolution, whose input channels are the image's;
    * Rows, Cols and the other 2-D types: Linear weights, except the classifier (the last 2-D
      weight), whose output rows are the classes.
    """
    weights = [n for n, s in shapes.items() if n.endswith("weight") and len(s) in (2, 3, 4)]
    if group_type is None or group_type not in GROUP_TYPES:
        return [n for n in weights if len(shapes[n]) in (2, 4)]
    ranks = GROUP_TYPES[group_type].ranks
    if ranks & {3, 4}:
        convs = [n for n in weights if len(shapes[n]) in ranks & {3, 4}]
        return convs[1:] if group_type == "Channels" else convs
    linears = [n for n in weights if len(shapes[n]) == 2]
    return linears[:-1]


class _Matcher:
    def __init__(
        self, param_shapes: Mapping[str, tuple[int, ...]], module_types: Mapping[str, str] | None = None
    ) -> None:
        self.shapes = {n: tuple(s) for n, s in param_shapes.items()}
        self.names = list(self.shapes)
        self.module_types = dict(module_types) if module_types is not None else None
        self.by_normal: dict[str, str] = {}
        for n in self.names:
            self.by_normal.setdefault(normalise(n), n)

    def modules(self) -> dict[str, str]:
        """Layer name -> its weight, for every Linear and convolution layer (by class name when the
        model's modules are known, else every 2-D/3-D/4-D ``.weight`` parameter), in model order."""
        layers = {
            n[: -len(".weight")]: n
            for n, s in self.shapes.items()
            if n.endswith(".weight") and len(s) in (2, 3, 4)
        }
        if self.module_types is None:
            return layers
        return {m: w for m, w in layers.items() if _LAYER_CLASS.search(self.module_types.get(m, ""))}

    def classifier_head(self) -> str | None:
        """Neural Compressor's classifier head: the last Linear or Conv2d module when nothing but
        Dropout comes after it among the model's modules (without the modules: the last layer, when
        it is 2-D)."""
        if self.module_types is None:
            layers = list(self.modules())
            last = layers[-1] if layers else None
            return last if last is not None and len(self.shapes[last + ".weight"]) == 2 else None
        order = [name for name, kind in self.module_types.items() if kind != "Dropout" and name]
        kernels = [name for name in order if self.module_types[name] in ("Linear", "Conv2d")]
        return kernels[-1] if kernels and kernels[-1] == order[-1] else None

    def select_ops(
        self, pattern: str, loc: SourceLocation | None, problems: ProblemCollector, owner: str
    ) -> list[str]:
        """The weights of the layers whose module name ``pattern`` finds (an unmatched one: closest)."""
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            problems.add(f"{owner}: invalid regular expression {pattern!r}: {exc}", loc, "fix the pattern")
            return []
        layers = self.modules()
        found = [w for m, w in layers.items() if rx.search(m) or rx.search(normalise(m))]
        if not found:
            close = closest_layers(pattern, list(layers))
            problems.add(
                f"{owner}: '{pattern}' matches no Linear or convolution layer of the model",
                loc,
                ("closest layers: " + ", ".join(close))
                if close
                else "run 'prunecli validate --model ... --json' to list names",
            )
        return found

    def closest(self, name: str) -> list[str]:
        normal = normalise(name)
        found = difflib.get_close_matches(normal, list(self.by_normal), n=3, cutoff=0.6)
        return [self.by_normal[f] for f in found]

    def resolve(
        self,
        name: str,
        loc: SourceLocation | None,
        problems: ProblemCollector,
        owner: str,
        group_type: str | None = None,
    ) -> list[str]:
        if name == ALL_PRUNABLE:
            found = all_prunable(self.shapes, group_type)
            if not found:
                what = f"weight that group_type {group_type} can prune" if group_type else "2-D or 4-D weight"
                problems.add(f"{owner}: {ALL_PRUNABLE} matches no {what} in this model", loc)
            return found
        if name.startswith(REGEX_PREFIX):
            pattern = name[len(REGEX_PREFIX) :]
            try:
                rx = re.compile(pattern)
            except re.error as exc:
                problems.add(
                    f"{owner}: invalid regular expression {pattern!r}: {exc}", loc, "fix the pattern"
                )
                return []
            found = [n for n in self.names if rx.fullmatch(n) or rx.fullmatch(normalise(n))]
            if not found:
                problems.add(
                    f"{owner}: '{name}' matches no parameter of the model (the whole name must match)",
                    loc,
                    "e.g. 're:layer[0-9]+\\..*conv1\\.weight'",
                )
            return found
        if name in self.shapes:
            return [name]
        real = self.by_normal.get(normalise(name))
        if real is not None:
            return [real]
        close = self.closest(name)
        problems.add(
            f"{owner}: no parameter named '{name}' in the model",
            loc,
            ("closest: " + ", ".join(close))
            if close
            else "run 'prunecli validate --model ... --json' to list names",
        )
        return []


def closest_layers(pattern: str, layers: list[str], n: int = 3) -> list[str]:
    """The layers nearest an unmatched module pattern: those holding most of its words, then by
    similarity of spelling (``layer1.conv`` -> ``layer1.0.conv1``)."""
    words = re.findall(r"[A-Za-z0-9_]+", pattern)
    literal = ".".join(words)

    def rank(layer: str) -> tuple[int, float]:
        held = sum(1 for w in words if w in layer)
        return held, difflib.SequenceMatcher(None, literal, layer).ratio()

    ranked = sorted(layers, key=rank, reverse=True)
    return [layer for layer in ranked[:n] if rank(layer)[0] > 0 or rank(layer)[1] >= 0.4]


def _owner(comp: Component) -> str:
    return f"{comp.section}.{comp.instance} ({comp.class_name})"


def _resolve_list(
    m: _Matcher,
    names: list[str],
    base: tuple[Any, ...],
    where: Callable[..., Any],
    p: ProblemCollector,
    owner: str,
    group_type: str | None = None,
) -> list[str]:
    out: list[str] = []
    problems_before = len(p.problems)
    excluded: set[str] = set()
    for i, name in enumerate(names):
        if isinstance(name, str) and name.startswith(OPS_EXCLUDE_PREFIX):
            pattern = name[len(OPS_EXCLUDE_PREFIX) :]
            if pattern == CLASSIFIER_HEAD:
                head = m.classifier_head()
                if head is None:
                    continue
                pattern = head  # read as a pattern, as Neural Compressor reads the head's name
            try:
                rx = re.compile(pattern)
            except re.error as exc:
                p.add(f"{owner}: invalid regular expression {pattern!r}: {exc}", where((*base, i)), "fix it")
                continue
            excluded.update(
                w for mod, w in m.modules().items() if rx.search(mod) or rx.search(normalise(mod))
            )
    for i, name in enumerate(names):
        loc = where((*base, i))
        if isinstance(name, str) and name.startswith(OPS_EXCLUDE_PREFIX):
            continue
        if isinstance(name, str) and name.startswith(OPS_PREFIX):
            for real in m.select_ops(name[len(OPS_PREFIX) :], loc, p, owner):
                if real not in out and real not in excluded:
                    out.append(real)
            continue
        if name == WILDCARD:
            p.add(
                f"{owner}: '*' is not a parameter name in a weights list",
                loc,
                f"use {ALL_PRUNABLE} or 're:<pattern>' to select many parameters",
            )
            continue
        for real in m.resolve(name, loc, p, owner, group_type):
            if real not in out and real not in excluded:
                out.append(real)
    if excluded and not out and len(p.problems) == problems_before:
        p.add(
            f"{owner}: every selected layer is excluded",
            where(base),
            "exclude fewer layers (excluded_op_names), or select others",
        )
    return out


def _resolve_dict(
    m: _Matcher,
    table: dict[Any, Any],
    base: tuple[Any, ...],
    where: Callable[..., Any],
    p: ProblemCollector,
    owner: str,
) -> dict[Any, Any]:
    """Pattern entries first, then explicit names, so an explicit entry overrides a pattern's."""
    expanded: dict[Any, Any] = {}
    explicit: dict[str, tuple[str, Any]] = {}
    for key, value in table.items():
        loc = where((*base, key), key=True)
        if key == WILDCARD:
            explicit[WILDCARD] = (key, value)
            continue
        key_text = str(key)
        pattern = key_text == ALL_PRUNABLE or key_text.startswith(REGEX_PREFIX)
        # reg_regims values are [strength, group_type]: the group type narrows __ALL_PRUNABLE__
        group_type = (
            value[1] if isinstance(value, list) and len(value) == 2 and isinstance(value[1], str) else None
        )
        for real in m.resolve(key_text, loc, p, owner, group_type):
            if pattern:
                expanded[real] = value
            elif real in explicit:
                p.add(f"{owner}: '{key}' and '{explicit[real][0]}' name the same parameter '{real}'", loc)
            else:
                explicit[real] = (key_text, value)
    expanded.update({real: value for real, (_, value) in explicit.items()})
    return expanded


def _check_groups(m: _Matcher, comp: Component, where: Callable[..., Any], p: ProblemCollector) -> None:
    args, owner = comp.args, _owner(comp)
    group = args.get("group_type")
    weights = args.get("weights")
    if isinstance(group, str) and isinstance(weights, list):
        for name in weights:
            _check_rank(m, name, group, where((*comp.yaml_path, "group_type")), p, owner)
        if group == "Blocks":
            shape = (args.get("kwargs") or {}).get("block_shape")
            for name in weights:
                volume = 1
                for d in shape or []:
                    volume *= d
                numel = 1
                for d in m.shapes.get(name, ()):
                    numel *= d
                if shape and name in m.shapes and numel % volume:
                    p.add(
                        f"{owner}: block_shape {shape} (volume {volume}) does not divide '{name}' of shape "
                        f"{list(m.shapes[name])}",
                        where((*comp.yaml_path, "kwargs", "block_shape")),
                    )
        if args.get("group_dependency") == "Leader" and group in structure_dims():
            _check_leader(m, comp, group, weights, where, p)
    regims = args.get("reg_regims")
    if isinstance(regims, dict):
        for name, value in regims.items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[1], str):
                _check_rank(m, name, value[1], where((*comp.yaml_path, "reg_regims", name)), p, owner)


def _check_rank(m: _Matcher, name: str, group: str, loc: Any, p: ProblemCollector, owner: str) -> None:
    ranks = GROUP_TYPES[group].ranks if group in GROUP_TYPES else None
    shape = m.shapes.get(name)
    if ranks is None or shape is None or len(shape) in ranks:
        return
    wanted = " or ".join(f"{r}-D" for r in sorted(ranks))
    p.add(
        f"{owner}: group_type {group} needs a {wanted} tensor, but '{name}' is {len(shape)}-D {list(shape)}",
        loc,
        "choose a group_type that fits (Filters/Channels for convolutions, Rows/Channels for Linear weights)",
    )


def _check_leader(
    m: _Matcher,
    comp: Component,
    group: str,
    weights: list[str],
    where: Callable[..., Any],
    p: ProblemCollector,
) -> None:
    dim = structure_dims()[group]
    shapes = [m.shapes.get(n) for n in weights]
    if not shapes or any(s is None or len(s) <= dim for s in shapes):
        return
    leader_count = shapes[0][dim]  # type: ignore[index]
    for i, (name, shape) in enumerate(zip(weights, shapes, strict=True)):
        if shape[dim] != leader_count:  # type: ignore[index]
            p.add(
                f"{_owner(comp)}: Leader group mismatch: '{name}' has {shape[dim]} {group.lower()} but the leader "  # type: ignore[index]
                f"'{weights[0]}' has {leader_count}",
                where((*comp.yaml_path, "weights", i)),
                "a Leader group lists tensors whose structures correspond one to one",
            )


def module_classes(model: Any) -> dict[str, str]:
    """Each module's class name by module name (``{"": "Net", "conv1": "Conv2d", ...}``).

    What a dialect that selects modules by class (NNI's ``op_types``) needs from a model; read
    from ``named_modules()`` without importing torch here.
    """
    return {name: type(module).__name__ for name, module in model.named_modules()}


def resolve_names(
    schedule: Schedule,
    param_shapes: Mapping[str, tuple[int, ...]],
    modules: Mapping[str, str] | None = None,
) -> Schedule:
    """A copy of ``schedule`` with every parameter name replaced by the model's real name.

    ``modules`` (:func:`module_classes` of the model) is needed by schedules that select modules
    rather than name parameters (``Schedule.bind``, e.g. an NNI config_list).
    Raises :class:`ScheduleError` listing every unmatched name (with the closest real names),
    every group type that does not fit its tensor, and every inconsistent Leader group.
    """
    if schedule.bind is not None:
        schedule = schedule.bind(schedule, param_shapes, modules)
    m = _Matcher(param_shapes, modules)
    p = ProblemCollector()

    def where(path: tuple[Any, ...], *, key: bool = False) -> SourceLocation | None:
        return schedule.where(path, key=key)

    components: dict[str, dict[str, Component]] = {}
    for section, instances in schedule.components.items():
        components[section] = {}
        for name, comp in instances.items():
            spec = lookup(comp.class_name)
            args = copy.deepcopy(comp.args)
            owner = _owner(comp)
            for arg in spec.name_list_args if spec else ():
                if isinstance(args.get(arg), list):
                    group = args.get("group_type") if isinstance(args.get("group_type"), str) else None
                    args[arg] = _resolve_list(m, args[arg], (*comp.yaml_path, arg), where, p, owner, group)
            for arg in spec.name_dict_args if spec else ():
                if isinstance(args.get(arg), dict):
                    args[arg] = _resolve_dict(m, args[arg], (*comp.yaml_path, arg), where, p, owner)
            new = dataclasses.replace(comp, args=args)
            _check_groups(m, new, where, p)
            components[section][name] = new
    policies = []
    for policy in schedule.policies:
        levels = policy.args.get("levels")
        if policy.kind == "pruner" and isinstance(levels, dict):
            base = (*policy.yaml_path, "pruner", "args", "levels")
            owner = f"policy #{policy.order + 1}"
            args = {**policy.args, "levels": _resolve_dict(m, levels, base, where, p, owner)}
            policy = dataclasses.replace(policy, args=args)
        policies.append(policy)
    p.raise_if_any(ScheduleError, f"{schedule.path}: names do not match the model")
    return dataclasses.replace(schedule, components=components, policies=policies)
