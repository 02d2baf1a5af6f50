"""Schedule languages other than Distiller's, each compiled into the same :class:`Schedule`.

A dialect recognises its documents (``detect``) and compiles one into a :class:`Schedule` whose
components are the engine's native pruner entries (:mod:`prunecli.schedule.native`), so nothing is
re-implemented per dialect: the runtime, ``plan``, ``validate``, thinning and reports see one form.
A dialect that carries its own training section (Intel LPOT's ``train:``) returns it in
``Schedule.training`` for the run application to honour.

Distiller's language is the default: a document no registered dialect claims is read as Distiller's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prunecli.errors import SourceLocation
from prunecli.schedule.model import Schedule

#: the name of the language a document is read as when no dialect claims it
DEFAULT_DIALECT = "distiller"

#: compile(document, locate, path, text) -> Schedule; raises ScheduleError with file:line:column
Compiler = Callable[[Any, Callable[..., SourceLocation], str, str], Schedule]


@dataclass(frozen=True)
class Dialect:
    """One schedule language: how to recognise it and how to compile it."""

    name: str  # "lpot", "inc", "nni", ... (what `prunecli validate` prints and `convert --to` takes)
    title: str  # "Intel LPOT pruning YAML", for messages and docs
    detect: Callable[[Any], bool]  # the parsed document -> "this is mine"
    compile: Compiler
    #: keyword options ``compile`` accepts besides the document (e.g. NNI's ``pruner``, which a
    #: config_list may leave to the command line); the loader refuses an option no dialect takes
    options: tuple[str, ...] = ()


DIALECTS: dict[str, Dialect] = {}


def register_dialect(dialect: Dialect) -> Dialect:
    if dialect.name in DIALECTS or dialect.name == DEFAULT_DIALECT:
        raise ValueError(f"dialect {dialect.name!r} is already registered")
    DIALECTS[dialect.name] = dialect
    return dialect


def dialect_title(name: str) -> str:
    """How messages name a language ("Distiller schedule", "NNI config_list", ...)."""
    return DIALECTS[name].title if name in DIALECTS else "Distiller schedule"


def detect_dialect(document: Any) -> Dialect | None:
    """The registered dialect that claims ``document``, or None for Distiller's language."""
    for dialect in DIALECTS.values():
        if dialect.detect(document):
            return dialect
    return None


# the dialects shipped with prunecli register themselves on import
from . import inc as _inc  # noqa: E402,F401  (after the registry they use)
from . import iterative as _iterative  # noqa: E402,F401
from . import lpot as _lpot  # noqa: E402,F401
from . import nni as _nni  # noqa: E402,F401
