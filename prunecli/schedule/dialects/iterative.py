"""Iterative schedules: a document with an ``iterative:`` section (see :mod:`prunecli.iterative.spec`).

Such a file holds no pruners or policies of its own: the task generator decides every pruning
step, so the compiled :class:`Schedule` is empty except for ``Schedule.iterative``, the checked
section, which ``prunecli run`` hands to the iterative loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prunecli.errors import ProblemCollector, ScheduleError, SourceLocation
from prunecli.schedule.dialects import Dialect, register_dialect
from prunecli.schedule.model import SECTIONS, Schedule

TOP_LEVEL = ("version", "iterative")


def _detect(document: Any) -> bool:
    return isinstance(document, dict) and "iterative" in document


def _compile(document: Any, locate: Callable[..., SourceLocation], path: str, text: str) -> Schedule:
    from prunecli.iterative.spec import parse_spec

    problems = ProblemCollector()
    for key in document:
        if key not in TOP_LEVEL:
            problems.add(
                f"an iterative schedule has no {key!r} section",
                locate((key,), key=True),
                "the generator decides every pruning step: keep only 'version' and 'iterative'",
            )
    version = document.get("version")
    if "version" in document and (version != 1 or isinstance(version, bool)):
        problems.add(f"unsupported schedule version {version!r}", locate(("version",)), "write 'version: 1'")
    problems.raise_if_any(ScheduleError, f"{path}: invalid schedule")
    spec = parse_spec(document["iterative"], locate, path)
    return Schedule(
        path=path,
        text=text,
        version=version if isinstance(version, int) else None,
        components={section: {} for section in SECTIONS},
        policies=[],
        locate=locate,
        dialect="iterative",
        iterative=spec,
    )


DIALECT = register_dialect(
    Dialect(name="iterative", title="iterative pruning schedule", detect=_detect, compile=_compile)
)
