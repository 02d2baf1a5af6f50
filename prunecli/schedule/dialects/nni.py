"""NNI's ``config_list`` (NNI 2 and NNI 3 keys) compiled into the engine's native pruner entries.

A file is either the list itself (JSON or YAML) or a mapping with ``pruner:`` (an NNI pruner class
name, i.e. an engine preset) and ``config_list:``; a bare list takes its pruner from the command
line (``--pruner``). Each entry (or each ``global_group_id`` / ``total_sparsity`` group) becomes
one native entry with the pruner's preset, the entry's sparsity and allocation; which weights it
prunes depends on the model's module names and classes, so ``weights`` are filled in by
:class:`~prunecli.schedule.dialects.nni_select.Binding` when the model is known. Pruning happens
at ``start_epoch`` (default 0); the iterative pruners (AGPPruner, LinearPruner, MovementPruner)
prune ``total_times`` times, every ``interval_epochs`` after ``start_epoch``, where their ramp
starts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prunecli.errors import ProblemCollector, ScheduleError, SourceLocation
from prunecli.schedule.checks import suggest
from prunecli.schedule.dialects import Dialect, register_dialect
from prunecli.schedule.model import SECTIONS, Component, Policy, Schedule
from prunecli.schedule.native import NATIVE_CLASS, resolved_axes

from .nni_keys import (
    COMMON_OP_TYPES,
    DATA_METRICS,
    DOCUMENT_KEYS,
    EXCLUDE_KEYS,
    GRANULARITY_TARGETS,
    KNOWN_KEYS,
    PRUNERS,
    QUANTIZATION_KEYS,
    RATIO_KEYS,
    SELECT_KEYS,
    UNSUPPORTED_KEYS,
)
from .nni_select import Binding, Entry, Selector

NAME = "nni"
TITLE = "NNI config_list"
DEFAULT_TOTAL_TIMES = 10
Locate = Callable[..., SourceLocation]


def detect(document: Any) -> bool:
    """A list with a mapping of NNI keys in it, or a mapping with ``config_list:``."""
    if isinstance(document, list):
        return any(isinstance(item, dict) and any(k in KNOWN_KEYS for k in item) for item in document)
    return isinstance(document, dict) and "config_list" in document


def _metric(pruner: str) -> str | None:
    return resolved_axes({"preset": pruner}).get("metric", {}).get("kind")


def iterative(pruner: str) -> bool:
    """Pruners whose preset ramps the sparsity over several pruning events."""
    return resolved_axes({"preset": pruner}).get("schedule", {}).get("kind") != "oneshot"


@dataclass
class _Settings:
    """The sparsity side of one entry."""

    ratio: float | None = None
    max_ratio: float | None = None
    min_ratio: float | None = None
    group: str | None = None  # global allocation group (global_group_id, or one per total_sparsity)
    coupled: bool = False  # dependency_group_id
    target: dict[str, Any] | None = None  # from granularity
    key_path: dict[str, tuple[Any, ...]] = field(default_factory=dict)


class _Compiler:
    """One document: parses it, collects every problem, builds the schedule."""

    def __init__(self, document: Any, locate: Locate, path: str, text: str, pruner: str | None) -> None:
        self.document, self.locate, self.path, self.text = document, locate, path, text
        self.option_pruner = pruner
        self.problems = ProblemCollector()
        self.locations: dict[tuple[int, str, int], SourceLocation] = {}

    def run(self) -> Schedule:
        entries_doc, base, head = self._document()
        pruner = self._pruner(head)
        start, times, interval = self._timing(head, pruner)
        entries: list[Entry] = []
        settings: list[_Settings] = []
        if not isinstance(entries_doc, list):
            self.problems.add(
                f"config_list must be a list of entries, got {type(entries_doc).__name__}",
                self.locate(base),
                "write each entry as '- op_types: [Conv2d]' with 'sparse_ratio: 0.5'",
            )
            entries_doc = []
        elif not entries_doc:
            self.problems.add("config_list is empty: nothing would be pruned", self.locate(base))
        for index, item in enumerate(entries_doc):
            parsed = self._entry(index, item, (*base, index))
            if parsed is not None:
                entries.append(parsed[0])
                settings.append(parsed[1])
        steps = self._training_steps(head, pruner)
        components, owners = self._components(entries, settings, pruner)
        self.problems.raise_if_any(ScheduleError, f"{self.path}: invalid {TITLE}")
        entries = [Entry(e.index, e.path, e.selector, e.exclude, owners.get(e.index)) for e in entries]
        if steps is not None:  # NNI trains training_steps first, then prunes once: one event at that step
            for comp in components.values():
                comp.args["schedule"] = {
                    "kind": "oneshot",
                    "every_steps": 1,
                    "start_step": steps,
                    "end_step": steps,
                }
            start, times, interval = 0, steps + 1, 1  # the policy's epochs only bound the steps
        policies = [
            self._policy(order, name, comp, start, times, interval)
            for order, (name, comp) in enumerate(components.items())
        ]
        return Schedule(
            path=self.path,
            text=self._stored_text(head),
            version=None,
            components={**{s: {} for s in SECTIONS}, "pruners": components},
            policies=policies,
            locate=self.locate,
            dialect=NAME,
            bind=Binding(entries, self.locations),
        )

    # ------------------------------------------------------------------ the document
    def _document(self) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        doc = self.document
        if isinstance(doc, list):
            return doc, (), {}
        for key in doc:
            if key not in DOCUMENT_KEYS:
                self.problems.add(
                    f"unknown top-level key {key!r}{suggest(str(key), DOCUMENT_KEYS)}",
                    self.locate((key,), key=True),
                    "an NNI file has: " + ", ".join(DOCUMENT_KEYS),
                )
        return doc.get("config_list"), ("config_list",), doc

    def _pruner(self, head: dict[str, Any]) -> str:
        written = head.get("pruner")
        given = self.option_pruner
        if written is not None and given is not None and written != given:
            self.problems.add(
                f"the file names pruner {written!r} but --pruner gives {given!r}",
                self.locate(("pruner",)),
                "leave out --pruner, or change the file's 'pruner:'",
            )
        name = given if given is not None else written
        where = (
            self.locate(("pruner",))
            if written is not None and given is None
            else SourceLocation(self.path, 1, 1)
        )
        if name is None:
            self.problems.add(
                "no pruner: a config_list says what to prune, the pruner says how",
                SourceLocation(self.path, 1, 1),
                "pass --pruner L1NormPruner (or another NNI pruner), or write the file as 'pruner: L1NormPruner' "
                "plus 'config_list:'",
            )
            return PRUNERS[0]
        if name not in PRUNERS:
            self.problems.add(
                f"unknown NNI pruner {name!r}{suggest(str(name), PRUNERS)}",
                where,
                "NNI pruners prunecli runs: " + ", ".join(PRUNERS),
            )
            return PRUNERS[0]
        return str(name)

    def _training_steps(self, head: dict[str, Any], pruner: str) -> int | None:
        """NNI's ``training_steps`` of the pruners that rank by training data (None when not given)."""
        if "training_steps" not in head:
            return None
        value = head["training_steps"]
        if iterative(pruner) or _metric(pruner) not in DATA_METRICS:
            self.problems.add(
                f"{pruner} ranks without training data: training_steps applies to "
                + ", ".join(p for p in PRUNERS if not iterative(p) and _metric(p) in DATA_METRICS),
                self.locate(("training_steps",), key=True),
                "remove training_steps",
            )
            return None
        if "start_epoch" in head:
            self.problems.add(
                "training_steps counts from the first training step: it cannot be combined with start_epoch",
                self.locate(("start_epoch",), key=True),
                "remove start_epoch",
            )
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            self.problems.add(
                f"training_steps must be an integer >= 1, got {value!r}", self.locate(("training_steps",))
            )
            return None
        return value

    def _timing(self, head: dict[str, Any], pruner: str) -> tuple[int, int, int]:
        values = {}
        for key, default, minimum in (
            ("start_epoch", 0, 0),
            ("total_times", None, 1),
            ("interval_epochs", 1, 1),
        ):
            value = head.get(key, default)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < minimum
            ):
                self.problems.add(
                    f"{key} must be an integer >= {minimum}, got {value!r}", self.locate((key,))
                )
                value = default
            values[key] = value
        if not iterative(pruner):
            for key in ("total_times", "interval_epochs"):
                if key in head:
                    self.problems.add(
                        f"{pruner} prunes once: {key} applies to the iterative pruners "
                        + ", ".join(p for p in PRUNERS if iterative(p)),
                        self.locate((key,), key=True),
                        f"remove {key}, or use an iterative pruner",
                    )
            return values["start_epoch"], 1, 1
        # the ramp starts at start_epoch (level 0) and reaches NNI's i-th level i intervals later,
        # i = 1..total_times: AGP's (1 - (1 - i/T)^3) * s, Linear's i/T * s
        times = values["total_times"] or DEFAULT_TOTAL_TIMES
        return values["start_epoch"], times + 1, values["interval_epochs"]

    # ------------------------------------------------------------------ one entry
    def _entry(self, index: int, item: Any, path: tuple[Any, ...]) -> tuple[Entry, _Settings] | None:
        where = f"config_list entry #{index + 1}"
        if not isinstance(item, dict):
            self.problems.add(
                f"{where} must be a mapping of NNI keys, got {item!r}",
                self.locate(path),
                "e.g. '- op_types: [Conv2d]' with 'sparse_ratio: 0.5' on the next line",
            )
            return None
        ok = self._known_keys(where, item, path)
        quantization = [k for k in item if k in QUANTIZATION_KEYS]
        if quantization:
            self.problems.add(
                f"{where}: {quantization[0]} makes this a quantization config; prunecli reads NNI "
                "config_lists for pruning only",
                self.locate((*path, quantization[0]), key=True),
                "put the quantization entries in a schedule's 'quantizers:' section as an NNIQuantizer's "
                "config_list (see docs/quantization.md) and keep the pruning entries here",
            )
            return None
        selector = self._selector(index, where, item, path)
        exclude = item.get("exclude", False)
        if "exclude" in item and exclude is not True:
            self.problems.add(
                f"{where}: exclude takes true, got {exclude!r}", self.locate((*path, "exclude"))
            )
            ok = False
        if exclude is True:
            given = [k for k in item if k not in (*SELECT_KEYS, "exclude")]
            if given:
                self.problems.add(
                    f"{where}: 'exclude' cannot be combined with {given[0]!r} (NNI refuses it too): an exclude "
                    "entry only names modules to leave alone",
                    self.locate((*path, given[0]), key=True),
                    f"move {given[0]} to another entry, or remove 'exclude'",
                )
                ok = False
            settings = _Settings()
        else:
            settings = self._settings(index, where, item, path)
        if selector is None or settings is None or not ok:
            return None
        return Entry(index, path, selector, exclude is True), settings

    def _known_keys(self, where: str, item: dict[str, Any], path: tuple[Any, ...]) -> bool:
        ok = True
        for key in item:
            loc = self.locate((*path, key), key=True)
            if key not in KNOWN_KEYS:
                ok = False
                self.problems.add(
                    f"{where}: unknown key {key!r}{suggest(str(key), KNOWN_KEYS)}",
                    loc,
                    "NNI config_list keys: " + ", ".join(k for k in KNOWN_KEYS if k not in QUANTIZATION_KEYS),
                )
            elif key in UNSUPPORTED_KEYS:
                ok = False
                self.problems.add(f"{where}: {key} is not supported", loc, UNSUPPORTED_KEYS[key])
        return ok

    def _selector(
        self, index: int, where: str, item: dict[str, Any], path: tuple[Any, ...]
    ) -> Selector | None:
        values: dict[str, tuple[str, ...]] = {}
        ok = True
        for key in (*SELECT_KEYS, *EXCLUDE_KEYS):
            if key not in item:
                continue
            value = item[key]
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                self.problems.add(
                    f"{where}: {key} must be a list of names, got {value!r}",
                    self.locate((*path, key)),
                    f"write e.g. '{key}: [{'Conv2d' if 'types' in key else 'conv1'}]'",
                )
                ok = False
                continue
            for i, v in enumerate(value):
                loc = self.locate((*path, key, i))
                self.locations[(index, "op_names_re" if key == "op_partial_names" else key, i)] = loc
                if key.endswith("_re"):
                    try:
                        re.compile(v)
                    except re.error as exc:
                        self.problems.add(
                            f"{where}: invalid regular expression {v!r}: {exc}", loc, "fix the pattern"
                        )
                        ok = False
                if key.endswith("op_types") and v != "default" and v not in COMMON_OP_TYPES:
                    hint = suggest(v, COMMON_OP_TYPES, cutoff=0.8)
                    if hint:
                        self.problems.add(
                            f"{where}: unknown op_type {v!r}{hint}",
                            loc,
                            "op_types are module class names as in type(module).__name__ (Conv2d, Linear, ...), "
                            "or 'default'",
                        )
                        ok = False
            values[key] = tuple(value)
        if not any(k in item for k in SELECT_KEYS):
            self.problems.add(
                f"{where} selects no module: give op_types, op_names, op_names_re or op_partial_names",
                self.locate(path),
                "e.g. 'op_types: [Conv2d]' (module classes) or 'op_names: [layer1.0.conv1]' (module names)",
            )
            ok = False
        if not ok:
            return None
        partial = tuple(f".*{re.escape(p)}.*" for p in values.get("op_partial_names", ()))
        return Selector(
            op_types=values.get("op_types", ()),
            op_names=values.get("op_names", ()),
            op_names_re=values.get("op_names_re", ()) + partial,
            exclude_op_names=values.get("exclude_op_names", ()),
            exclude_op_names_re=values.get("exclude_op_names_re", ()),
            exclude_op_types=values.get("exclude_op_types", ()),
        )

    def _settings(
        self, index: int, where: str, item: dict[str, Any], path: tuple[Any, ...]
    ) -> _Settings | None:
        s = _Settings()
        ok = True
        ratios = [k for k in RATIO_KEYS if k in item]
        if not ratios:
            self.problems.add(
                f"{where} gives no sparsity: add sparse_ratio (or NNI 2's sparsity_per_layer / total_sparsity)",
                self.locate(path),
                "e.g. 'sparse_ratio: 0.5'; to leave modules unpruned write an entry with 'exclude: true' or use "
                "exclude_op_names",
            )
            return None
        if len(ratios) > 1:
            self.problems.add(
                f"{where}: give one of {', '.join(ratios)}, not several",
                self.locate((*path, ratios[1]), key=True),
                f"keep {ratios[0]}",
            )
            ok = False
        key = ratios[0]
        s.ratio = self._fraction(where, item, path, key, upper_open=True)
        for cap in ("max_sparse_ratio", "max_sparsity_per_layer"):
            if cap in item:
                s.max_ratio = self._fraction(where, item, path, cap, upper_open=False, lower_open=True)
        if "min_sparse_ratio" in item:
            s.min_ratio = self._fraction(where, item, path, "min_sparse_ratio", upper_open=True)
        if key == "total_sparsity":
            s.group = f"total_sparsity_{index + 1}"
        if "global_group_id" in item:
            gid = item["global_group_id"]
            if not isinstance(gid, int | str) or isinstance(gid, bool):
                self.problems.add(
                    f"{where}: global_group_id must be a number or a name, got {gid!r}",
                    self.locate((*path, "global_group_id")),
                )
                ok = False
            elif key == "total_sparsity":
                self.problems.add(
                    f"{where}: total_sparsity already prunes its modules as one global group; "
                    "global_group_id goes with sparse_ratio",
                    self.locate((*path, "global_group_id"), key=True),
                    "write 'sparse_ratio:' instead of 'total_sparsity:'",
                )
                ok = False
            else:
                s.group = f"group_{gid}"
        if s.group is not None and s.min_ratio is not None:
            self.problems.add(
                f"{where}: min_sparse_ratio in a global group is not supported (NNI uses it only when the group's "
                "whole count falls below the sum of the minimums, a rule the engine does not have)",
                self.locate((*path, "min_sparse_ratio"), key=True),
                "remove min_sparse_ratio, or drop the global group",
            )
            ok = False
        if "dependency_group_id" in item:
            s.coupled = True
        if "granularity" in item:
            s.target = self._granularity(where, item["granularity"], (*path, "granularity"))
            ok = ok and s.target is not None
        if s.coupled and s.target is not None:
            self.problems.add(
                f"{where}: dependency_group_id prunes whole channel groups; it cannot be combined with granularity",
                self.locate((*path, "granularity"), key=True),
                "remove one of the two",
            )
            ok = False
        caps = [k for k in ("max_sparse_ratio", "max_sparsity_per_layer") if k in item]
        if (
            s.ratio is None
            or (caps and s.max_ratio is None)
            or ("min_sparse_ratio" in item and s.min_ratio is None)
        ):
            ok = False  # a bad fraction, already reported
        return s if ok else None

    def _fraction(
        self,
        where: str,
        item: dict[str, Any],
        path: tuple[Any, ...],
        key: str,
        *,
        upper_open: bool,
        lower_open: bool = False,
    ) -> float | None:
        value = item[key]
        good = isinstance(value, int | float) and not isinstance(value, bool)
        if good:
            good = (value > 0 if lower_open else value >= 0) and (value < 1 if upper_open else value <= 1)
        if not good:
            interval = f"{'(' if lower_open else '['}0, 1{')' if upper_open else ']'}"
            self.problems.add(
                f"{where}: {key} must be a fraction in {interval}, got {value!r}",
                self.locate((*path, key)),
                "e.g. 0.5 removes half"
                + (" (prunecli keeps at least one group per layer)" if upper_open else ""),
            )
            return None
        return float(value)

    def _granularity(self, where: str, value: Any, path: tuple[Any, ...]) -> dict[str, Any] | None:
        if isinstance(value, str) and value in GRANULARITY_TARGETS:
            kind = GRANULARITY_TARGETS[value]
            return {} if kind is None else {"kind": kind}
        if (
            isinstance(value, list)
            and value
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        ):
            return {"kind": "block", "shape": list(value)}
        self.problems.add(
            f"{where}: unsupported granularity {value!r}{suggest(str(value), GRANULARITY_TARGETS)}",
            self.locate(path),
            "granularity is default, out_channel, in_channel, or a block shape such as [4, 4]",
        )
        return None

    # ------------------------------------------------------------------ building
    def _components(
        self, entries: list[Entry], settings: list[_Settings], pruner: str
    ) -> tuple[dict[str, Component], dict[int, str]]:
        components: dict[str, Component] = {}
        owners: dict[int, str] = {}
        first: dict[str, tuple[Entry, _Settings]] = {}
        for entry, s in zip(entries, settings, strict=True):
            if entry.exclude:
                continue
            name = s.group or f"entry_{entry.index + 1}"
            owners[entry.index] = name
            if name in first:
                self._same_group(entry, s, *first[name])
                continue
            first[name] = (entry, s)
            components[name] = Component(
                section="pruners",
                instance=name,
                class_name=NATIVE_CLASS,
                args=self._args(pruner, s),
                location=self.locate(entry.path),
                arg_locations={},
                yaml_path=entry.path,
            )
        return components, owners

    def _same_group(self, entry: Entry, s: _Settings, first: Entry, f: _Settings) -> None:
        where = f"config_list entry #{entry.index + 1}"
        for label, mine, theirs in (
            ("sparse_ratio", s.ratio, f.ratio),
            ("max_sparse_ratio", s.max_ratio, f.max_ratio),
            ("granularity", s.target, f.target),
            ("dependency_group_id", s.coupled, f.coupled),
        ):
            if mine != theirs:
                self.problems.add(
                    f"{where}: its global group is pruned together with entry #{first.index + 1}, so their "
                    f"{label} must be equal ({mine!r} here, {theirs!r} there)",
                    self.locate(entry.path),
                    "give every entry of a global_group_id the same settings",
                )
                return

    @staticmethod
    def _args(pruner: str, s: _Settings) -> dict[str, Any]:
        assert s.ratio is not None
        args: dict[str, Any] = {"preset": pruner}
        if s.group is not None:
            # NNI ranks raw scores and removes int(ratio * weights) of the group
            allocation: dict[str, Any] = {"kind": "global", "normalize": "none", "rounding": "down"}
            if s.max_ratio is not None:
                allocation["max_sparsity_per_layer"] = s.max_ratio
            args["allocation"] = allocation
            ratio = s.ratio
        else:  # NNI clamps a layer's ratio into [min, max]
            ratio = min(s.max_ratio if s.max_ratio is not None else 1.0, max(s.min_ratio or 0.0, s.ratio))
        if s.coupled:
            args["target"] = {"kind": "coupled"}
        elif s.target:
            args["target"] = dict(s.target)
        args["sparsity"] = ratio
        args["weights"] = []
        return args

    def _policy(
        self, order: int, name: str, comp: Component, start: int, times: int, interval: int
    ) -> Policy:
        epochs = tuple(start + k * interval for k in range(times))
        return Policy(
            kind="pruner",
            instance=name,
            args={},
            epochs=epochs,
            starting_epoch=start,
            ending_epoch=epochs[-1] + 1,
            frequency=interval if times > 1 else None,
            order=order,
            location=comp.location,
            yaml_path=comp.yaml_path,
        )

    def _stored_text(self, head: dict[str, Any]) -> str:
        """The file's text, made self-contained when the pruner came from the command line."""
        if self.option_pruner is None or "pruner" in head:
            return self.text
        if isinstance(self.document, list):
            body = "".join(f"  {line}" for line in self.text.splitlines(keepends=True))
            return f"pruner: {self.option_pruner}\nconfig_list:\n{body}"
        return json.dumps({"pruner": self.option_pruner, **self.document}, indent=1) + "\n"


def compile_nni(
    document: Any, locate: Locate, path: str, text: str, *, pruner: str | None = None
) -> Schedule:
    """Compile an NNI config_list (``Dialect.compile``); ``pruner`` when the file names none."""
    return _Compiler(document, locate, path, text, pruner).run()


DIALECT = register_dialect(Dialect(NAME, TITLE, detect, compile_nni, options=("pruner",)))
