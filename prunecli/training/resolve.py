"""Where a run's settings come from: defaults < schedule hints < config file < command line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prunecli.errors import ConfigError

from .config import COMMAND_LINE, RunConfig, merge_config, read_config_file
from .setup import schedule_hints


def companion_config(schedule_path: str | os.PathLike) -> Path | None:
    """``configs/<stem>.yaml`` beside the schedule's folder: the defaults shipped with a schedule."""
    path = Path(schedule_path).resolve()
    candidate = path.parent.parent / "configs" / f"{path.stem}.yaml"
    return candidate if candidate.is_file() else None


def resolve_run_config(
    schedule: str | None,
    config_file: str | None,
    overrides: dict[str, Any],
) -> tuple[RunConfig, Path | None]:
    """Merge every source of settings; returns the config and the config file actually used."""
    from prunecli.schedule import load_schedule

    file_layer: dict[str, Any] = {}
    used = Path(config_file) if config_file else None
    if used is not None:
        file_layer = read_config_file(used)
    schedule_path = schedule or file_layer.get("schedule")
    if used is None and schedule_path:
        used = companion_config(schedule_path)
        if used is not None:
            file_layer = read_config_file(used)
    hints: dict[str, Any] = {}
    if schedule_path:
        if not os.path.isfile(schedule_path):
            raise ConfigError(
                f"schedule file not found: {schedule_path}",
                hint="pass the path of a schedule YAML, e.g. schedules/quickstart.yaml",
            )
        pruner = overrides.get("pruner") or file_layer.get("pruner")
        hints = schedule_hints(load_schedule(schedule_path, pruner=pruner))
        schedule_path = os.path.abspath(schedule_path)
    layers = [hints, file_layer, {k: v for k, v in overrides.items() if v is not None}]
    if schedule_path:
        layers.append({"schedule": schedule_path})
    return merge_config(*layers, source=COMMAND_LINE), used
