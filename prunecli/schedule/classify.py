"""Recognise Distiller YAML files that are not compression schedules.

Distiller's examples folder also holds post-training-quantization activation statistics
(top-level keys are layer names) and AMC network lists (``network: {arch: [modules]}``).
Feeding one to the schedule checker would produce a wall of "unknown key" errors; naming
the file's real kind is more useful.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .model import SECTIONS

SCHEDULE_KEYS = frozenset(("version", "policies", *SECTIONS))
STATS_KEYS = frozenset(("min", "max", "avg_min", "avg_max", "mean", "std", "shape", "b", "inputs", "output"))


@dataclass(frozen=True)
class FileKind:
    name: str
    description: str


ACTIVATION_STATS = FileKind(
    "activation-statistics",
    "activation statistics (per-layer min/max/mean, used by post-training quantization)",
)
AMC_NETWORK = FileKind(
    "amc-network",
    "AMC network description (per-architecture lists of the modules AMC may prune)",
)


def _has_stats(value: Any, depth: int = 0) -> bool:
    if not isinstance(value, dict) or depth > 3:
        return False
    if STATS_KEYS & set(value) and any(k in value for k in ("min", "max", "inputs", "output")):
        return True
    return any(_has_stats(v, depth + 1) for v in value.values())


def _is_stats(data: dict[str, Any]) -> bool:
    values = list(data.values())
    return (
        bool(values)
        and all(isinstance(v, dict) for v in values)
        and sum(map(_has_stats, values)) * 2 >= len(values)
    )


def _is_amc(data: dict[str, Any]) -> bool:
    network = data.get("network")
    return isinstance(network, dict) and all(isinstance(v, list) for v in network.values())


#: Detectors in order; the first match names the file's kind.
DETECTORS: list[tuple[Callable[[dict[str, Any]], bool], FileKind]] = [
    (_is_amc, AMC_NETWORK),
    (_is_stats, ACTIVATION_STATS),
]


def classify(data: dict[str, Any]) -> FileKind | None:
    """The kind of a non-schedule Distiller file, or None when it looks like a schedule."""
    if SCHEDULE_KEYS & set(data):
        return None
    for detect, kind in DETECTORS:
        if detect(data):
            return kind
    return None
