"""NNI's module selection: which modules each config_list entry names, once the model is known.

An entry selects ``(op_names or op_names_re) and op_types``, minus its ``exclude_op_*`` and the
modules of every ``exclude: true`` entry (NNI 3 reads NNI 2's ``exclude`` entries this way). A
module selected by several entries takes the settings of the LAST one, the rule NNI's
config_list documentation gives (NNI 3.0 itself keeps the first and logs a warning; prunecli
warns too). Names are module names from ``named_modules()``, types their class names; the
weight pruned is ``<module>.weight``.

:class:`Binding` is the ``Schedule.bind`` of a compiled config_list: it fills each native entry's
``weights`` for one model, reporting names and types the model does not have (with the closest).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prunecli.errors import Problem, ProblemCollector, ScheduleError, SourceLocation
from prunecli.schedule.model import Schedule

from .nni_keys import DEFAULT_OP_TYPES


@dataclass(frozen=True)
class Selector:
    """One entry's selection keys (``op_partial_names`` already turned into ``op_names_re``)."""

    op_types: tuple[str, ...] = ()
    op_names: tuple[str, ...] = ()
    op_names_re: tuple[str, ...] = ()
    exclude_op_names: tuple[str, ...] = ()
    exclude_op_names_re: tuple[str, ...] = ()
    exclude_op_types: tuple[str, ...] = ()

    def types(self) -> set[str]:
        """``op_types`` with ``default`` expanded."""
        out: set[str] = set()
        for t in self.op_types:
            out.update(DEFAULT_OP_TYPES if t == "default" else (t,))
        return out

    def select(self, modules: Mapping[str, str]) -> list[str]:
        """NNI's ``select_modules_by_config``, in model order (``re.match``: anchored at the start)."""
        chosen: set[str] = set(self.op_names) & set(modules)
        for pattern in self.op_names_re:
            chosen.update(n for n in modules if re.match(pattern, n))
        if self.op_types:
            by_type = {n for n, cls in modules.items() if cls in self.types()}
            chosen = chosen & by_type if (self.op_names or self.op_names_re) else chosen | by_type
        chosen -= set(self.exclude_op_names)
        for pattern in self.exclude_op_names_re:
            chosen = {n for n in chosen if not re.match(pattern, n)}
        chosen = {n for n in chosen if modules[n] not in self.exclude_op_types}
        return [n for n in modules if n in chosen]


@dataclass(frozen=True)
class Entry:
    """One config_list entry as prunecli understood it."""

    index: int
    path: tuple[Any, ...]  # the entry's path in the document (for positions)
    selector: Selector
    exclude: bool = False  # an NNI 2 ``exclude: true`` entry
    component: str | None = None  # the native entry it prunes with (None for exclude entries)


def weight_of(module: str) -> str:
    return f"{module}.weight" if module else "weight"


@dataclass
class Binding:
    """Fills the compiled schedule's ``weights`` for one model (``Schedule.bind``)."""

    entries: list[Entry]
    #: positions of each entry's selection values: (entry index, key, item index) -> location
    locations: dict[tuple[int, str, int], SourceLocation] = field(default_factory=dict)

    def __call__(
        self,
        schedule: Schedule,
        shapes: Mapping[str, tuple[int, ...]],
        modules: Mapping[str, str] | None,
    ) -> Schedule:
        if modules is None:
            raise ScheduleError(
                f"{schedule.path}: an NNI config_list selects modules by name and class, so it needs the model",
                location=SourceLocation(schedule.path, 1, 1),
                hint="pass the model: prunecli validate FILE --model NAME (the Python API: resolve_names(..., "
                "modules=module_classes(model)))",
            )
        problems = ProblemCollector()
        warnings: list[Problem] = []
        excluded = self._excluded(modules, problems)
        owner: dict[str, Entry] = {}
        for entry in self.entries:
            self._check_names(entry, modules, problems)
            if entry.exclude:
                continue
            for name in entry.selector.select(modules):
                if name in excluded:
                    continue
                previous = owner.get(name)
                if previous is not None:
                    warnings.append(
                        Problem(
                            f"module '{name}' is selected by config_list entries #{previous.index + 1} and "
                            f"#{entry.index + 1}: the later one applies (NNI 3.0 would keep the first)",
                            schedule.where(entry.path),
                            "select each module once to be independent of the rule",
                        )
                    )
                owner[name] = entry
        weights: dict[str, list[str]] = {}
        for name, entry in owner.items():
            if weight_of(name) not in shapes:
                problems.add(
                    f"config_list entry #{entry.index + 1}: module '{name}' ({modules[name]}) has no weight to prune",
                    schedule.where(entry.path),
                    "narrow op_types/op_names to layers with weights (Conv2d, Linear, ...)",
                )
                continue
            assert entry.component is not None
            weights.setdefault(entry.component, []).append(weight_of(name))
        problems.raise_if_any(ScheduleError, f"{schedule.path}: the config_list does not fit the model")
        return self._bound(schedule, weights, warnings)

    def _excluded(self, modules: Mapping[str, str], problems: ProblemCollector) -> set[str]:
        out: set[str] = set()
        for entry in self.entries:
            if not entry.exclude:
                continue
            s = entry.selector
            out.update(n for n in s.op_names if n in modules)
            out.update(n for n in modules if any(re.match(p, n) for p in s.op_names_re))
            out.update(n for n, cls in modules.items() if cls in s.types())
        return out

    def _check_names(self, entry: Entry, modules: Mapping[str, str], problems: ProblemCollector) -> None:
        """Names and types the model does not have: NNI ignores them silently, prunecli does not."""
        s = entry.selector
        where = f"config_list entry #{entry.index + 1}"
        for key, names in (("op_names", s.op_names), ("exclude_op_names", s.exclude_op_names)):
            for i, name in enumerate(names):
                if name not in modules:
                    close = difflib.get_close_matches(name, [m for m in modules if m], n=3, cutoff=0.5)
                    problems.add(
                        f"{where}: no module named '{name}' in the model ({key} are module names, "
                        "not parameter names)",
                        self.locations.get((entry.index, key, i)),
                        ("closest: " + ", ".join(close))
                        if close
                        else "run 'prunecli validate FILE --model NAME --json' to list the modules",
                    )
        present = sorted(set(modules.values()))
        for key, types in (("op_types", s.op_types), ("exclude_op_types", s.exclude_op_types)):
            for i, name in enumerate(types):
                if name == "default" or name in present:
                    continue
                close = difflib.get_close_matches(name, present, n=3, cutoff=0.5)
                problems.add(
                    f"{where}: no module of class '{name}' in the model ({key} are module class names)",
                    self.locations.get((entry.index, key, i)),
                    ("closest: " + ", ".join(close))
                    if close
                    else "classes in the model: " + ", ".join(present),
                )
        for key, patterns in (("op_names_re", s.op_names_re), ("exclude_op_names_re", s.exclude_op_names_re)):
            for i, pattern in enumerate(patterns):
                if key == "op_names_re" and not any(re.match(pattern, n) for n in modules):
                    problems.add(
                        f"{where}: '{pattern}' matches no module name of the model",
                        self.locations.get((entry.index, key, i)),
                        "patterns match the start of a module name, e.g. 'layer1\\..*conv'",
                    )

    @staticmethod
    def _bound(schedule: Schedule, weights: Mapping[str, Sequence[str]], warnings: list[Problem]) -> Schedule:
        pruners = {
            name: dataclasses.replace(comp, args={**comp.args, "weights": list(weights[name])})
            for name, comp in schedule.components.get("pruners", {}).items()
            if weights.get(name)
        }
        for name in schedule.components.get("pruners", {}):
            if name not in pruners:
                warnings.append(
                    Problem(
                        f"{name} prunes nothing in this model: every module it selects is excluded or taken by "
                        "a later entry",
                        schedule.components["pruners"][name].location,
                    )
                )
        components = {**schedule.components, "pruners": pruners}
        policies = [p for p in schedule.policies if p.kind != "pruner" or p.instance in pruners]
        return dataclasses.replace(
            schedule,
            components=components,
            policies=policies,
            bind=None,
            warnings=[*schedule.warnings, *warnings],
        )
