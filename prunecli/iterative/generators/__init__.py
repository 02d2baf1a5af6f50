"""The task generators, by name: ``agp``, ``linear``, ``lottery_ticket`` and whatever else registers.

A generator is any class with the two methods of :class:`~prunecli.iterative.task.TaskGenerator`
(``initial_tasks(space)`` and ``next_tasks(result)``). Register one with
``GENERATORS.register("name", cls)`` (or ``@GENERATORS.register("name")``), or name user code in a
schedule as ``package.module:Class``: it is imported when the run starts, never when the schedule
is read. :func:`build_generator` turns a name and its options into an instance, refusing unknown
names (with a did-you-mean) and options the class does not take.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from prunecli.engine.registry import Registry, RegistryError
from prunecli.iterative.task import TaskGenerator

#: name -> generator class (or factory returning a generator)
GENERATORS: Registry[Callable[..., TaskGenerator]] = Registry("task generator")


class GeneratorError(ValueError):
    """A generator that cannot be built; ``key`` is the option at fault (``kind`` for the name)."""

    def __init__(self, message: str, hint: str, key: str = "kind") -> None:
        super().__init__(message)
        self.message, self.hint, self.key = message, hint, key


def generator_options(factory: Callable[..., Any]) -> list[str] | None:
    """The keyword options a generator class takes (None when it takes ``**kwargs``)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def resolve_generator(name: str) -> Callable[..., TaskGenerator]:
    """The class registered as ``name`` (or imported from ``package.module:Class``)."""
    try:
        return GENERATORS.get(name)
    except RegistryError as exc:
        hint = exc.hint.replace("'package.module:function'", "'package.module:Class'")
        raise GeneratorError(exc.message, hint) from None


def build_generator(name: str, options: Mapping[str, Any] | None = None) -> TaskGenerator:
    """An instance of generator ``name`` with ``options``; GeneratorError naming the fix otherwise."""
    import difflib

    factory = resolve_generator(name)
    options = dict(options or {})
    known = generator_options(factory)
    if known is not None:
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = (
                    f"did you mean '{close[0]}'?"
                    if close
                    else f"{name} takes: {', '.join(known) or 'no options'}"
                )
                raise GeneratorError(f"generator {name} has no option {key!r}", hint, key)
    try:
        generator = factory(**options)
    except (TypeError, ValueError) as exc:
        raise GeneratorError(f"generator {name}: {exc}", "check its options in docs/iterative.md") from None
    missing = [m for m in ("initial_tasks", "next_tasks") if not callable(getattr(generator, m, None))]
    if missing:
        raise GeneratorError(
            f"{name} is not a task generator: it has no {' and no '.join(missing)} method",
            "subclass prunecli.iterative.TaskGenerator and implement initial_tasks(space) and next_tasks(result)",
        )
    return generator


# the built-in generators register themselves on import
from prunecli.iterative.generators import amc as _amc  # noqa: E402,F401
from prunecli.iterative.generators import annealing as _annealing  # noqa: E402,F401
from prunecli.iterative.generators import autocompress as _autocompress  # noqa: E402,F401
from prunecli.iterative.generators import netadapt as _netadapt  # noqa: E402,F401
from prunecli.iterative.generators import scheduled as _scheduled  # noqa: E402,F401

__all__ = ["GENERATORS", "GeneratorError", "build_generator", "generator_options", "resolve_generator"]
