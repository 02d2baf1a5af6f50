"""When each policy fires and what it aims for, with Distiller's exact epoch semantics.

* A range policy is active on ``range(starting_epoch, ending_epoch, frequency)`` (end exclusive);
  a list policy on exactly its ``epochs``.
* Within one epoch, policies run in declaration order, except that LR-scheduler policies run
  after all others (Distiller instantiates them last).
* AGP: ``span = ((end - start - 1) // freq) * freq`` and
  ``target = final + (initial - final) * (1 - (epoch - start) / span) ** 3``, so the first active
  epoch aims at ``initial`` and the last (``start + span``) exactly at ``final``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from prunecli.errors import ScheduleError

from .model import Policy, Schedule
from .vocabulary import parameter_names


def agp_span(start: int, end: int, freq: int) -> int:
    """Offset of the last pruning epoch from the first (Distiller's ``span``)."""
    return ((end - start - 1) // freq) * freq


def agp_target(initial: float, final: float, epoch: int, start: int, end: int, freq: int) -> float:
    """AGP sparsity target at ``epoch`` (Zhu & Gupta's cubic ramp, epoch granularity)."""
    span = agp_span(start, end, freq)
    if span <= 0:
        raise ScheduleError(
            f"AGP span is {span} for starting_epoch {start}, ending_epoch {end}, frequency {freq}",
            hint=f"set ending_epoch to at least {start + freq + 1} so that AGP prunes at two epochs or more",
        )
    return final + (initial - final) * (1.0 - (epoch - start) / span) ** 3


@dataclass
class PlanEntry:
    """One policy firing in one epoch."""

    kind: str
    instance: str
    class_name: str
    order: int
    target: float | None = None  # the pruner's sparsity target this epoch, where it has one
    note: str | None = None  # how the target is set when it is not a single number
    weights: list[str] = field(default_factory=list)


@dataclass
class EpochPlan:
    epoch: int
    entries: list[PlanEntry]
    #: Latest target of every pruner that has fired so far (carried over epochs where it rests).
    targets: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _target(schedule: Schedule, policy: Policy, epoch: int) -> tuple[float | None, str | None]:
    from .catalog import lookup  # catalog imports torch lazily; keep timeline import cheap

    comp = schedule.component(policy.kind, policy.instance)
    spec = lookup(comp.class_name)
    kind = spec.target if spec else None
    args = comp.args
    if kind == "agp":
        assert policy.frequency is not None  # the loader refuses AGP with an epochs list
        value = agp_target(
            args["initial_sparsity"],
            args["final_sparsity"],
            epoch,
            policy.starting_epoch,
            policy.ending_epoch,
            policy.frequency,
        )
        return value, None
    if kind == "oneshot":
        return float(args["desired_sparsity"]), None
    if kind == "levels":
        levels = policy.args.get("levels") or args.get("levels") or {}
        values = set(levels.values())
        if len(values) == 1:
            return float(values.pop()), None
        return None, "per-parameter levels: " + ", ".join(f"{k}={v}" for k, v in levels.items())
    if kind == "native":
        return _native_target(args, policy, epoch)
    if kind == "random_range":
        low, high = args["sparsity_range"]
        return None, f"random level in [{low}, {high}] each time"
    if policy.kind == "pruner":
        return None, "threshold-based (sparsity depends on the weights)"
    return None, None


def _native_target(args: dict[str, Any], policy: Policy, epoch: int) -> tuple[float | None, str | None]:
    """The level a native entry's schedule asks for at ``epoch`` (of its objective)."""
    from prunecli.engine.schedules import build_schedule

    from .native import final_fraction, resolved_axes

    axes = resolved_axes(args)
    final = final_fraction(args)
    if final is None:
        return None, None
    schedule = build_schedule(axes["schedule"])
    if schedule.windowed:  # events are training steps: the epoch alone cannot place them
        return None, (
            f"{schedule.kind} to {final:g} on steps {schedule.start_step}..{schedule.end_step}"
            f" (every {max(schedule.every_steps, 1)})"
        )
    meta = {
        "starting_epoch": policy.starting_epoch,
        "ending_epoch": policy.ending_epoch,
        "frequency": policy.frequency,
        "current_epoch": epoch,
    }
    level = schedule.level(schedule.progress(meta), final)
    objective = axes["objective"]["kind"]
    if "admm" in axes and epoch < max(policy.epochs):
        return None, "ADMM iteration (masks at the last epoch)"
    if objective != "weights":
        return None, f"{level:.4f} of the model's {objective} removed"
    return level, None


def _weights(schedule: Schedule, policy: Policy) -> list[str]:
    return parameter_names(schedule.component(policy.kind, policy.instance))


def default_epochs(schedule: Schedule) -> int:
    """Enough epochs to see every non-LR policy fire (every policy when there are only LR ones);
    one when the events are training steps (their policies' epochs are only a bound)."""
    if schedule.counts_steps():
        return 1
    last = schedule.last_epoch()
    if last < 0:
        last = max((e for p in schedule.policies for e in p.epochs), default=-1)
    return last + 1


def plan(schedule: Schedule, epochs: int | None = None) -> list[EpochPlan]:
    """One :class:`EpochPlan` per epoch ``0 .. epochs-1`` (entries empty where nothing fires)."""
    count = default_epochs(schedule) if epochs is None else epochs
    by_epoch: dict[int, list[Policy]] = {}
    for policy in schedule.policies:
        for e in policy.epochs:
            if e < count:
                by_epoch.setdefault(e, []).append(policy)
    result: list[EpochPlan] = []
    current: dict[str, float] = {}
    for epoch in range(count):
        firing = sorted(by_epoch.get(epoch, []), key=lambda p: (p.is_lr, p.order))
        entries = []
        for policy in firing:
            comp = schedule.component(policy.kind, policy.instance)
            target, note = _target(schedule, policy, epoch) if policy.kind == "pruner" else (None, None)
            if target is not None:
                current[policy.instance] = target
            weights = _weights(schedule, policy) if policy.kind in ("pruner", "regularizer") else []
            entries.append(
                PlanEntry(policy.kind, policy.instance, comp.class_name, policy.order, target, note, weights)
            )
        result.append(EpochPlan(epoch, entries, dict(current)))
    return result


def _is_agp(class_name: str) -> bool:
    from prunecli.schedule.catalog import lookup

    spec = lookup(class_name)
    return spec is not None and spec.target == "agp"


def agp_curves(schedule: Schedule) -> list[dict[str, Any]]:
    """The AGP target sparsity of every AGP pruner policy at each epoch it fires (for reports)."""
    curves = []
    for policy in schedule.policies:
        if policy.kind != "pruner" or policy.frequency is None:
            continue
        comp = schedule.component("pruner", policy.instance)
        if not _is_agp(comp.class_name):
            continue
        initial, final = float(comp.args["initial_sparsity"]), float(comp.args["final_sparsity"])
        try:
            targets = [
                agp_target(initial, final, e, policy.starting_epoch, policy.ending_epoch, policy.frequency)
                for e in policy.epochs
            ]
        except ScheduleError:
            continue  # an empty AGP span: nothing to draw
        curves.append(
            {
                "pruner": policy.instance,
                "class": comp.class_name,
                "group_type": comp.args.get("group_type"),
                "weights": list(comp.args.get("weights") or []),
                "epochs": list(policy.epochs),
                "targets": targets,
            }
        )
    return curves
