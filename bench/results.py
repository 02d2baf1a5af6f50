"""What a benchmark hands to the report: tables, targets and notes."""

from __future__ import annotations

from dataclasses import dataclass, field

NOT_INSTALLED = "not installed"


class Unavailable(Exception):
    """A variant cannot run here (a peer not installed, a prunecli part missing); the table says why."""


@dataclass
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        if len(cells) != len(self.header):
            raise ValueError(f"row has {len(cells)} cells, table {self.caption!r} has {len(self.header)}")
        self.rows.append([str(c) for c in cells])


@dataclass
class Target:
    """A goal: ``met`` is None when it could not be measured in this run."""

    goal: str
    measured: str
    met: bool | None
    note: str = ""

    @property
    def verdict(self) -> str:
        return {True: "met", False: "missed", None: "not measured"}[self.met]


@dataclass
class Section:
    key: str
    title: str
    method: str
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def seconds(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"


def count(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3f} {unit}"
    return f"{n:.0f}"


def mib(n_bytes: float | None) -> str:
    return "n/a" if n_bytes is None else f"{n_bytes / 2**20:.0f} MiB"


def short_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def progress(message: str) -> None:
    """One line on stderr, so a long run shows where it is."""
    import sys

    print(f"[bench]   {message}", file=sys.stderr, flush=True)
