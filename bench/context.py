"""State shared by the benchmarks of one run (the thinned models feed the latency sweep)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.settings import Settings


@dataclass
class Context:
    settings: Settings
    #: model name -> {"dense": nn.Module, "prunecli": nn.Module | None, ...}, filled by the thinning benchmark
    thinned: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: one-off findings shared across models, e.g. whether NNI's default tracer works here
    facts: dict[str, Any] = field(default_factory=dict)
