"""What the Intel dialects (LPOT, Neural Compressor) share: located key checks and the compiled form.

A dialect compiles its document into a *Distiller-language document* of native pruner entries
(:mod:`prunecli.schedule.native`) and policies, then hands it to the Distiller loader, so every
check a native entry gets (axis kinds, options, policy ranges) runs on dialect files too. The
compiled document's paths are mapped back to the source's by :class:`AliasLocate`, so an error
about ``pruners.lpot_0.weights[2]`` points at the ``names:`` entry the user wrote.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prunecli.errors import Problem, ProblemCollector, ScheduleError, SourceLocation
from prunecli.schedule.checks import suggest
from prunecli.schedule.model import Schedule

Path = tuple[Any, ...]


class AliasLocate:
    """``locate`` for a compiled document: a path under an alias prefix is looked up in the source."""

    def __init__(self, locate: Callable[..., SourceLocation], aliases: Mapping[Path, Path]) -> None:
        self.locate = locate
        self.aliases = dict(aliases)

    def __call__(self, path: Path = (), *, key: bool = False) -> SourceLocation:
        path = tuple(path)
        for n in range(len(path), 0, -1):
            target = self.aliases.get(path[:n])
            if target is not None:
                return self.locate((*target, *path[n:]), key=key)
        return self.locate(path, key=key)


@dataclasses.dataclass
class Reader:
    """Located checks on one source document; every problem is collected, none raised early."""

    locate: Callable[..., SourceLocation]
    dialect_title: str
    problems: ProblemCollector = dataclasses.field(default_factory=ProblemCollector)
    warnings: list[Problem] = dataclasses.field(default_factory=list)

    def add(self, message: str, path: Path, hint: str | None = None, *, key: bool = False) -> None:
        self.problems.add(message, self.locate(path, key=key), hint)

    def warn(self, message: str, path: Path, hint: str | None = None) -> None:
        self.warnings.append(Problem(message, self.locate(path, key=True), hint))

    def mapping(self, value: Any, path: Path, what: str, example: str) -> dict[str, Any] | None:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(f"{what} must be a mapping of 'key: value' lines, got {_kind(value)}", path, example)
            return None
        return value

    def keys(self, body: Mapping[str, Any], path: Path, allowed: Iterable[str], what: str) -> None:
        """Unknown keys, each with the closest known one."""
        allowed = list(allowed)
        for key in body:
            if key not in allowed:
                self.unknown(f"key {key!r} in {what}", key, allowed, (*path, key), f"{what} takes", key=True)

    def unknown(
        self, what: str, word: Any, known: Iterable[str], path: Path, listed: str, *, key: bool = False
    ) -> None:
        """'unknown <what> (did you mean X?)', with every known name in the hint."""
        known = list(known)
        self.add(
            f"unknown {what}{suggest(str(word), known)}", path, f"{listed}: " + ", ".join(known), key=key
        )

    def in_order(
        self, low: tuple[str, float, Path], high: tuple[str, float], relation: str, hint: str
    ) -> bool:
        """``low <= high``, else a problem at the low value's key: '<low> <v> is <relation> <high> <w>'."""
        (low_key, low_value, where), (high_key, high_value) = low, high
        if low_value <= high_value:
            return True
        self.add(f"{low_key} {low_value} is {relation} {high_key} {high_value}", where, hint)
        return False

    def fraction(self, body: Mapping[str, Any], key: str, path: Path, default: float | None) -> float | None:
        """A sparsity in [0, 1)."""
        if key not in body or body[key] is None:
            return default
        value = body[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            self.add(
                f"{key} must be a fraction in [0, 1), got {value!r}",
                (*path, key),
                f"write e.g. '{key}: 0.5'",
            )
            return None
        return float(value)

    def integer(
        self, body: Mapping[str, Any], key: str, path: Path, default: int | None, minimum: int = 0
    ) -> int | None:
        if key not in body or body[key] is None:
            return default
        value = body[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.add(
                f"{key} must be a whole number >= {minimum}, got {value!r}",
                (*path, key),
                f"write e.g. '{key}: {max(minimum, 1)}'",
            )
            return None
        return value

    def choice(
        self, body: Mapping[str, Any], key: str, path: Path, choices: Iterable[str], default: str | None
    ) -> str | None:
        if key not in body or body[key] is None:
            return default
        value, choices = body[key], list(choices)
        if value not in choices:
            self.add(
                f"{key} {value!r} is not one of {', '.join(choices)}{suggest(str(value), choices)}",
                (*path, key),
                f"write '{key}: {choices[0]}'",
            )
            return None
        return str(value)

    def names(self, body: Mapping[str, Any], key: str, path: Path) -> list[str] | None:
        """A name or a list of names (an empty list is the same as none)."""
        value = body.get(key)
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.add(
                f"{key} must be a list of names, got {value!r}",
                (*path, key),
                f"write e.g. \"{key}: ['layer1.0.conv1.weight']\"",
            )
            return None
        return list(value)


def compile_document(
    document: dict[str, Any],
    aliases: Mapping[Path, Path],
    reader: Reader,
    *,
    path: str,
    text: str,
    dialect: str,
    training: dict[str, Any] | None,
) -> Schedule:
    """The compiled Distiller-language document as a :class:`Schedule` of this dialect."""
    from prunecli.schedule.loader import build_distiller_schedule

    reader.problems.raise_if_any(ScheduleError, f"{path}: invalid {reader.dialect_title} file")
    schedule = build_distiller_schedule(document, AliasLocate(reader.locate, aliases), path=path, text=text)
    schedule = dataclasses.replace(schedule, dialect=dialect, training=training)
    schedule.warnings.extend(reader.warnings)
    return schedule


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value!r}"
    return "null" if value is None else type(value).__name__
