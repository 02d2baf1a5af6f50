"""The parsed, validated form of a Distiller schedule.

Produced by the loader, consumed by the compression runtime: nothing here knows about
torch, so a schedule can be checked and planned without building a model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prunecli.errors import Problem, SourceLocation

#: The component sections of a schedule, in the order Distiller builds them.
SECTIONS: tuple[str, ...] = ("pruners", "regularizers", "quantizers", "extensions", "lr_schedulers")

#: Policy entry key -> the section its ``instance_name`` must be defined in.
POLICY_KINDS: dict[str, str] = {
    "pruner": "pruners",
    "regularizer": "regularizers",
    "quantizer": "quantizers",
    "extension": "extensions",
    "lr_scheduler": "lr_schedulers",
}


@dataclass
class Component:
    """One instance from a component section, e.g. ``pruners: {low_pruner: {class: ..., ...}}``."""

    section: str
    instance: str
    class_name: str
    args: dict[str, Any]
    location: SourceLocation | None = None
    arg_locations: dict[str, SourceLocation] = field(default_factory=dict)
    #: Path of this instance in the YAML document, e.g. ``("pruners", "low_pruner")``.
    yaml_path: tuple[Any, ...] = ()


@dataclass
class Policy:
    """One entry of ``policies``: which instance runs, with which args, on which epochs."""

    kind: str  # one of POLICY_KINDS
    instance: str
    args: dict[str, Any]
    epochs: tuple[int, ...]  # the active epochs, already expanded
    starting_epoch: int
    ending_epoch: int  # exclusive, as in Distiller
    frequency: int | None  # None when given as an explicit ``epochs`` list
    order: int  # declaration index among all policies
    location: SourceLocation | None = None
    #: Path of this entry in the YAML document, e.g. ``("policies", 3)``.
    yaml_path: tuple[Any, ...] = ()

    @property
    def is_lr(self) -> bool:
        return self.kind == "lr_scheduler"


@dataclass
class Schedule:
    """A whole schedule: components by section and the policy list in declaration order."""

    path: str | None
    text: str
    version: int | None
    components: dict[str, dict[str, Component]]
    policies: list[Policy]
    #: ``locate(path) -> SourceLocation`` for any YAML path (see ``prunecli.schedule.yamlio``).
    locate: Callable[..., SourceLocation] | None = field(default=None, repr=False, compare=False)
    #: accepted but suspicious input (a key given twice, whose last value is used), with positions
    warnings: list[Problem] = field(default_factory=list, compare=False)
    #: the language the file was written in ("distiller", or a name from ``schedule.dialects``)
    dialect: str = "distiller"
    #: a dialect's own training section (data, transforms, criterion, optimizer), when it has one
    training: dict[str, Any] | None = field(default=None, compare=False)
    #: for a dialect that selects modules (NNI's op_types/op_names): ``bind(schedule, shapes, modules)``
    #: returns the schedule with its ``weights`` filled in for one model (parameter shapes, and each
    #: module's class name by module name); ``names.resolve_names`` calls it
    bind: Callable[..., Schedule] | None = field(default=None, repr=False, compare=False)
    #: the checked ``iterative:`` section (a ``prunecli.iterative.spec.IterativeSpec``) of an
    #: iterative schedule: ``prunecli run`` then runs the iterative loop instead of epochs
    iterative: Any = field(default=None, compare=False)

    def where(self, path: tuple[Any, ...], *, key: bool = False) -> SourceLocation | None:
        """Source position of a YAML path, or None for schedules built in code."""
        return self.locate(path, key=key) if self.locate else None

    def component(self, kind: str, instance: str) -> Component:
        return self.components[POLICY_KINDS[kind]][instance]

    def counts_steps(self) -> bool:
        """Whether some pruner's events are training steps, so its policy's epochs are only a bound
        and the run's length must be given (``--epochs``)."""
        from .native import NATIVE_CLASS, counts_steps

        return any(
            c.class_name == NATIVE_CLASS and counts_steps(c.args)
            for c in self.components.get("pruners", {}).values()
        )

    def last_epoch(self) -> int:
        """The last epoch on which any non-LR policy fires (-1 when none does)."""
        epochs = [e for p in self.policies if not p.is_lr for e in p.epochs]
        return max(epochs, default=-1)
