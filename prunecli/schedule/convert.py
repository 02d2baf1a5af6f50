"""``prunecli convert``: a loaded schedule written in another schedule language.

Targets:

* ``native``: a prunecli schedule whose pruners are the engine's native entries. Distiller classes
  with a bit-identical decomposition (docs/pruning-engine.md) become native entries; the others
  stay as they are (still valid prunecli) and are listed.
* ``distiller``: Distiller's own language. Native entries whose axes are one of Distiller's
  classes become that class; any other native entry cannot be written and is listed.
* ``nni``: an NNI file (``pruner:`` plus ``config_list:``). A config_list names one pruner, selects
  modules (a parameter ``X.weight`` becomes module ``X``) and prunes them once (or, for the
  iterative pruners, ``total_times`` times); everything else (regularizers, LR schedulers,
  extensions, per-pruner epochs, a second kind of pruner) is listed.

Nothing is dropped silently: every part of the source the target cannot express is in
:attr:`Conversion.lost` with its position in the source file. Schedules that select modules (an
NNI config_list) are converted after their names are resolved against a model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from prunecli.errors import Problem, ScheduleError

from .checks import suggest
from .model import SECTIONS, Component, Policy, Schedule
from .names import normalise
from .native import NATIVE_CLASS, PRESETS, resolved_axes
from .vocabulary import GROUP_TYPES

#: Distiller group_type <-> engine target (the vocabulary's), for the group types whose native entry
#: gives identical masks
_GROUP_TARGETS = {group: str(GROUP_TYPES[group].ranking) for group in ("Filters", "Channels")}
_TARGET_GROUPS = {v: k for k, v in _GROUP_TARGETS.items()}
#: Distiller ranked-structure class -> its metric
_RANKED = {"L1RankedStructureParameterPruner": "l1", "L2RankedStructureParameterPruner": "l2"}
_RANKED_BY_METRIC = {v: k for k, v in _RANKED.items()}


@dataclass
class Conversion:
    """The converted schedule's text, and what the target language could not say."""

    source: str
    source_dialect: str
    target: str
    text: str
    lost: list[Problem] = field(default_factory=list)  # not expressible: left out of ``text``
    notes: list[Problem] = field(default_factory=list)  # expressed differently, or kept as written

    def to_dict(self) -> dict[str, Any]:
        from prunecli.validation import problem_dict

        return {
            "source": self.source,
            "source_dialect": self.source_dialect,
            "target": self.target,
            "text": self.text,
            "lost": [problem_dict(p) for p in self.lost],
            "notes": [problem_dict(p) for p in self.notes],
        }


# ---------------------------------------------------------------------------- the entries


def native_args(comp: Component) -> dict[str, Any] | None:
    """The native entry with the same masks as a Distiller pruner (None when there is none)."""
    args = comp.args
    extra = set(args) - {"initial_sparsity", "final_sparsity", "desired_sparsity", "group_type", "weights"}
    if extra:
        return None
    if comp.class_name == "AutomatedGradualPruner":
        return {
            "target": "element",
            "metric": "l1",
            "schedule": {"kind": "agp", "initial": args["initial_sparsity"]},
            "sparsity": args["final_sparsity"],
            "weights": list(args["weights"]),
        }
    ranked = comp.class_name.removesuffix("_AGP")
    target = _GROUP_TARGETS.get(str(args.get("group_type")))
    if ranked not in _RANKED or target is None:
        return None
    out: dict[str, Any] = {"target": target, "metric": _RANKED[ranked]}
    if comp.class_name.endswith("_AGP"):
        out["schedule"] = {"kind": "agp", "initial": args["initial_sparsity"]}
        out["sparsity"] = args["final_sparsity"]
    else:
        out["sparsity"] = args["desired_sparsity"]
    out["weights"] = list(args["weights"])
    return out


def _plain_weights(args: dict[str, Any]) -> list[str] | None:
    weights = args.get("weights")
    if isinstance(weights, str):
        return [weights]
    if isinstance(weights, list):
        return list(weights)
    return None  # a mapping of per-tensor targets


def _engine_only(args: dict[str, Any]) -> bool:
    objective = resolved_axes(args).get("objective", {})
    engine = resolved_axes(args).get("admm") or args.get("plugins")
    return bool(engine) or objective.get("kind", "weights") != "weights"


def distiller_args(args: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The Distiller class and arguments of a native entry (None when Distiller has no such class)."""
    axes = resolved_axes(args)
    weights = _plain_weights(args)
    if weights is None or _engine_only(args) or "sparsity" not in args:
        return None
    target, metric = axes["target"], axes["metric"]
    allocation, schedule = axes.get("allocation", {}), axes.get("schedule", {})
    if allocation != {"kind": "uniform"} or len(target) != 1 or len(metric) != 1:
        return None
    if set(schedule) - {"kind", "initial"}:
        return None
    kind, final = schedule.get("kind"), args["sparsity"]
    initial = schedule.get("initial", 0.0)
    if target["kind"] == "element" and metric["kind"] == "l1":
        if kind == "agp":
            return "AutomatedGradualPruner", {
                "initial_sparsity": initial,
                "final_sparsity": final,
                "weights": weights,
            }
        if kind == "oneshot":
            return "SparsityLevelParameterPruner", {"levels": dict.fromkeys(weights, final)}
        return None
    group = _TARGET_GROUPS.get(target["kind"])
    ranked = _RANKED_BY_METRIC.get(metric["kind"])
    if group is None or ranked is None:
        return None
    if kind == "agp":
        return f"{ranked}_AGP", {
            "initial_sparsity": initial,
            "final_sparsity": final,
            "group_type": group,
            "weights": weights,
        }
    if kind == "oneshot":
        return ranked, {"group_type": group, "desired_sparsity": final, "weights": weights}
    return None


def nni_pruner(comp: Component) -> str | None:
    """The NNI pruner (an engine preset) whose masks this pruner gives, when there is one."""
    if comp.class_name == NATIVE_CLASS:
        args = comp.args
        if _plain_weights(args) is None or _engine_only(args) or "sparsity" not in args:
            return None
        mine = resolved_axes(args)
        fits = []  # presets with this metric and schedule; the exact target first, else a granularity
        for name in PRESETS:
            theirs = resolved_axes({"preset": name})
            if (
                theirs.get("metric") != mine.get("metric")
                or theirs["schedule"]["kind"] != mine["schedule"]["kind"]
            ):
                continue
            if theirs.get("target") == mine.get("target"):
                return name
            if mine["target"].get("kind") == "coupled" or granularity(mine["target"]) is not None:
                fits.append(name)
        fits.sort(key=lambda name: resolved_axes({"preset": name})["target"]["kind"] == "element")
        return fits[0] if fits else None
    native = native_args(comp)
    return nni_pruner(_native_component(comp, native)) if native is not None else None


def granularity(target: dict[str, Any]) -> str | list[int] | None:
    """NNI's ``granularity`` for an engine target (None when NNI has no word for it)."""
    from .dialects.nni_keys import GRANULARITY_TARGETS

    if target.get("kind") == "block" and set(target) <= {"kind", "shape"}:
        return list(target.get("shape") or []) or None
    names = {kind: name for name, kind in GRANULARITY_TARGETS.items() if kind is not None}
    return names.get(str(target.get("kind"))) if set(target) == {"kind"} else None


def _native_component(comp: Component, args: dict[str, Any]) -> Component:
    return Component(comp.section, comp.instance, NATIVE_CLASS, args, comp.location, {}, comp.yaml_path)


# ---------------------------------------------------------------------------- writers


def _policy_dict(policy: Policy) -> dict[str, Any]:
    body: dict[str, Any] = {"instance_name": policy.instance}
    if policy.args:
        body["args"] = policy.args
    out: dict[str, Any] = {policy.kind: body}
    if policy.frequency is None:
        out["epochs"] = list(policy.epochs)
    else:
        out.update(
            starting_epoch=policy.starting_epoch, ending_epoch=policy.ending_epoch, frequency=policy.frequency
        )
    return out


def _dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=100)


def _sections(schedule: Schedule, pruners: dict[str, dict[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {"version": 1}
    for section in SECTIONS:
        body = (
            pruners
            if section == "pruners"
            else {
                n: {"class": c.class_name, **c.args} for n, c in schedule.components.get(section, {}).items()
            }
        )
        if body:
            doc[section] = body
    return doc


def to_native(schedule: Schedule, conv: Conversion) -> str:
    pruners: dict[str, dict[str, Any]] = {}
    for name, comp in schedule.components.get("pruners", {}).items():
        if comp.class_name == NATIVE_CLASS:
            pruners[name] = dict(comp.args)
            continue
        native = native_args(comp)
        if native is None:
            pruners[name] = {"class": comp.class_name, **comp.args}
            conv.notes.append(
                Problem(
                    f"pruners.{name} ({comp.class_name}) kept as a Distiller class: no native entry gives the same masks",
                    comp.location,
                )
            )
        else:
            pruners[name] = native
    doc = _sections(schedule, pruners)
    doc["policies"] = [_policy_dict(p) for p in schedule.policies]
    return _dump(doc)


def to_distiller(schedule: Schedule, conv: Conversion) -> str:
    pruners: dict[str, dict[str, Any]] = {}
    dropped: set[str] = set()
    for name, comp in schedule.components.get("pruners", {}).items():
        if comp.class_name != NATIVE_CLASS:
            pruners[name] = {"class": comp.class_name, **comp.args}
            continue
        found = distiller_args(comp.args)
        if found is None:
            dropped.add(name)
            axes = resolved_axes(comp.args)
            conv.lost.append(
                Problem(
                    f"pruners.{name}: Distiller has no pruner for "
                    + ", ".join(f"{axis} {spec.get('kind')}" for axis, spec in axes.items())
                    + " (left out with its policies)",
                    comp.location,
                    "keep the native schedule (prunecli runs it as it is), or convert --to native",
                )
            )
            continue
        class_name, args = found
        pruners[name] = {"class": class_name, **args}
    doc = _sections(schedule, pruners)
    doc["policies"] = [
        _policy_dict(p) for p in schedule.policies if not (p.kind == "pruner" and p.instance in dropped)
    ]
    return _dump(doc)


def to_nni(schedule: Schedule, conv: Conversion) -> str:
    from .dialects.nni import DEFAULT_TOTAL_TIMES, iterative

    for section in SECTIONS:
        if section == "pruners":
            continue
        for name, comp in schedule.components.get(section, {}).items():
            conv.lost.append(
                Problem(
                    f"{section}.{name} ({comp.class_name}): an NNI config_list holds pruning settings only",
                    comp.location,
                    "keep this part in a Distiller schedule",
                )
            )
    policies = {p.instance: p for p in schedule.policies if p.kind == "pruner"}
    pruner: str | None = None
    timing: tuple[int, int, int] | None = None
    entries: list[dict[str, Any]] = []
    for name, comp in schedule.components.get("pruners", {}).items():
        policy = policies.get(name)
        kind = nni_pruner(comp)
        if kind is None or policy is None:
            conv.lost.append(
                Problem(
                    f"pruners.{name} ({comp.class_name}): "
                    + ("no NNI pruner prunes the same way" if policy is not None else "no policy runs it"),
                    comp.location,
                    "NNI pruners: " + ", ".join(PRESETS),
                )
            )
            continue
        if pruner is not None and kind != pruner:
            conv.lost.append(
                Problem(
                    f"pruners.{name}: prunes as {kind}, but a config_list has one pruner ({pruner})",
                    comp.location,
                    "convert the schedule's pruners of each kind separately",
                )
            )
            continue
        mine = _timing(comp, policy)
        if timing is not None and mine != timing:
            conv.lost.append(
                Problem(
                    f"pruners.{name}: its epochs differ from the other pruners' ({list(policy.epochs)}); "
                    "a config_list prunes every entry at the same time",
                    policy.location,
                )
            )
            continue
        entry = _nni_entry(name, comp, kind, conv)
        if entry is None:
            continue
        pruner, timing = kind, mine
        entries.append(entry)
        if policy.args:
            conv.lost.append(
                Problem(f"policy of pruners.{name}: its args {sorted(policy.args)}", policy.location)
            )
    doc: dict[str, Any] = {"pruner": pruner or "LevelPruner"}
    if timing is not None and timing[0] == "steps":
        doc["training_steps"] = timing[1]
    elif timing is not None:
        _, start, times, interval = timing
        if start:
            doc["start_epoch"] = start
        if iterative(doc["pruner"]):
            if times - 1 != DEFAULT_TOTAL_TIMES:  # the ramp's first event (level 0) is at start_epoch
                doc["total_times"] = max(times - 1, 1)
            if interval != 1:
                doc["interval_epochs"] = interval
        elif times > 1:
            conv.lost.append(
                Problem(f"{doc['pruner']} prunes once: the policies' {times} pruning epochs become one", None)
            )
    doc["config_list"] = entries
    return _dump(doc)


#: the schedule options of a step window (NNI's training_steps compile to one at a single step)
_STEP_WINDOW = ("every_steps", "start_step", "end_step")


def _training_steps(schedule: dict[str, Any]) -> int | None:
    """N when a one-shot schedule prunes once at training step N (NNI's ``training_steps``)."""
    start = schedule.get("start_step")
    if schedule.get("kind") == "oneshot" and start is not None and start == schedule.get("end_step"):
        return int(start)
    return None


def _timing(comp: Component, policy: Policy) -> tuple[Any, ...]:
    """When a pruner prunes, as a config_list can say it: a step, or epochs (start, count, interval)."""
    args = comp.args if comp.class_name == NATIVE_CLASS else native_args(comp) or {}
    steps = _training_steps(resolved_axes(args).get("schedule", {}))
    if steps is not None:
        return ("steps", steps)
    return ("epochs", policy.epochs[0], len(policy.epochs), policy.frequency or 1)


def _nni_entry(name: str, comp: Component, kind: str, conv: Conversion) -> dict[str, Any] | None:
    args = comp.args if comp.class_name == NATIVE_CLASS else native_args(comp)
    assert args is not None
    modules, others = [], []
    for weight in _plain_weights(args) or []:
        (modules if weight.endswith(".weight") and not weight.startswith("re:") else others).append(weight)
    for weight in others:
        conv.lost.append(
            Problem(
                f"pruners.{name}: '{weight}' is not a module's weight (NNI selects modules)",
                comp.location,
                "convert with --model to expand patterns into names",
            )
        )
    if not modules:
        return None
    entry: dict[str, Any] = {
        "op_names": [normalise(w).removesuffix(".weight") for w in modules],
        "sparse_ratio": args["sparsity"],
    }
    preset = resolved_axes({"preset": kind})["target"]
    target = resolved_axes(args)["target"]
    if target.get("kind") == "coupled":
        entry["dependency_group_id"] = name  # the engine finds the coupled channels in the traced graph
    elif target != preset:
        entry["granularity"] = granularity(target)
    schedule = resolved_axes(args)["schedule"]
    handled = ("kind", *_STEP_WINDOW) if _training_steps(schedule) is not None else ("kind",)
    for option, value in schedule.items():
        if option not in handled and value:
            conv.lost.append(
                Problem(
                    f"pruners.{name}: schedule option {option}={value} (NNI's pruners start from 0)",
                    comp.location,
                )
            )
    allocation = resolved_axes(args).get("allocation", {})
    if allocation.get("kind") == "global":
        entry["global_group_id"] = name
        if allocation.get("normalize", "mean") != "none" or allocation.get("rounding", "up") != "down":
            conv.notes.append(
                Problem(
                    f"pruners.{name}: NNI ranks a global group's raw scores and removes int(ratio x weights); "
                    "this entry normalises or rounds differently",
                    comp.location,
                )
            )
        if "max_sparsity_per_layer" in allocation:
            entry["max_sparse_ratio"] = allocation["max_sparsity_per_layer"]
    return entry


#: target language -> writer
WRITERS: dict[str, Callable[[Schedule, Conversion], str]] = {
    "distiller": to_distiller,
    "native": to_native,
    "nni": to_nni,
}


def convert_schedule(schedule: Schedule, to: str) -> Conversion:
    """``schedule`` written in the language ``to`` (one of :data:`WRITERS`).

    A schedule that selects modules (``schedule.bind`` set: an NNI config_list) must have its
    names resolved against a model first (:func:`prunecli.schedule.names.resolve_names`).
    """
    if to not in WRITERS:
        raise ScheduleError(
            f"unknown target language {to!r}{suggest(to, WRITERS)}",
            hint="write --to " + ", --to ".join(WRITERS),
        )
    if schedule.bind is not None:
        raise ScheduleError(
            f"{schedule.path}: an NNI config_list selects modules, so converting it needs the model",
            hint="pass --model NAME to prunecli convert",
        )
    conv = Conversion(str(schedule.path), schedule.dialect, to, "")
    conv.text = WRITERS[to](schedule, conv)
    if schedule.training:  # a dialect's own training section (LPOT's train:) is no schedule's part
        settings = ", ".join(f"{key}: {value}" for key, value in schedule.training.items())
        conv.lost.append(
            Problem(
                "the training section is not part of a schedule",
                schedule.where(("pruning", "train"), key=True),
                f"give prunecli run these settings (a --config file): {settings}",
            )
        )
    return conv
