"""prunecli's side of every benchmark, through its public interfaces only.

Parts of prunecli that are not importable turn into :class:`Unavailable`, so a table can say
which part was missing instead of the whole run failing.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from bench.results import Unavailable


def require(module: str, attribute: str) -> Any:
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise Unavailable(f"{module}.{attribute} not available ({type(exc).__name__})") from exc


def create_model(name: str) -> nn.Module:
    model, _spec = require("prunecli.models", "create_model")(name)
    return model


def level_schedule_text(param_names: list[str], level: float) -> str:
    """A one-pruner schedule that keeps every named tensor at ``level`` element-wise sparsity."""
    levels = "\n".join(f"      {name}: {level}" for name in param_names)
    return (
        "version: 1\n"
        "pruners:\n"
        "  level_pruner:\n"
        "    class: SparsityLevelParameterPruner\n"
        "    levels:\n"
        f"{levels}\n"
        "policies:\n"
        "  - pruner:\n"
        "      instance_name: level_pruner\n"
        "    starting_epoch: 0\n"
        "    ending_epoch: 1000\n"
        "    frequency: 1\n"
    )


def load_schedule_text(text: str, name: str = "bench-schedule.yaml") -> Any:
    return require("prunecli.schedule", "load_schedule")(name, text=text)


def build_scheduler(schedule: Any, model: nn.Module, optimizer: Any, **kwargs: Any) -> Any:
    return require("prunecli.compression", "build_scheduler")(schedule, model, optimizer, **kwargs)
