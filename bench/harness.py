"""Alternating-round timing: every variant runs once per round, in a rotating order.

Comparing variants through per-round ratios (then taking the median) cancels most of the
drift a shared machine adds, which absolute times alone cannot.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

#: A variant performs its work once and returns the seconds it wants counted.
Variant = Callable[[], float]


@dataclass
class Stats:
    """The samples of one variant and their comparison with the baseline."""

    name: str
    times: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None

    @property
    def ratio_range(self) -> tuple[float, float] | None:
        return (min(self.ratios), max(self.ratios)) if self.ratios else None


#: Clocks. On a shared machine the CPU time of a single-threaded process barely moves when other
#: tenants load the cores, while its wall time can double; latency needs the wall clock.
WALL: Callable[[], float] = time.perf_counter
CPU: Callable[[], float] = time.process_time


def timed(work: Callable[[], object], clock: Callable[[], float] = WALL) -> float:
    """Seconds one call of ``work`` takes on ``clock``."""
    start = clock()
    work()
    return clock() - start


def rotation(names: list[str], round_index: int) -> list[str]:
    """The order of round ``round_index``: each variant takes every position in turn."""
    shift = round_index % len(names)
    return names[shift:] + names[:shift]


def alternate(
    variants: Mapping[str, Variant],
    *,
    baseline: str,
    rounds: int,
    warmup: int = 1,
    max_rounds: Mapping[str, int] | None = None,
) -> dict[str, Stats]:
    """Run every variant ``rounds`` times, interleaved; a variant that raises is dropped, with its error.

    ``max_rounds`` limits slow variants to their first N rounds (still alternating with the others).
    """
    limits = dict(max_rounds or {})
    names = list(variants)
    if baseline not in variants:
        raise ValueError(f"baseline {baseline!r} is not one of {names}")
    stats = {name: Stats(name) for name in names}

    def run_one(name: str) -> float | None:
        if stats[name].error is not None:
            return None
        try:
            return variants[name]()
        except Exception as exc:  # a peer failing is a result to report, not a crash
            stats[name].error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            return None

    for _ in range(warmup):
        for name in names:
            run_one(name)
    for index in range(rounds):
        order = [n for n in rotation(names, index) if index < limits.get(n, rounds)]
        sample = {name: run_one(name) for name in order}
        base = sample.get(baseline)
        for name, seconds in sample.items():
            if seconds is None:
                continue
            stats[name].times.append(seconds)
            if base:
                stats[name].ratios.append(seconds / base)
    return stats
