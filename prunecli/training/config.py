"""Run configuration: defaults < schedule hints < config file < command line.

A configuration is a flat YAML mapping (see ``configs/*.yaml`` and ``schema.CONFIG_SCHEMA``). Every
problem is reported with the file, line and column it comes from, all at once, as a ``ConfigError``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import pathlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from prunecli.errors import ConfigError, Problem, SourceLocation

from .schema import CONFIG_SCHEMA, FIELDS, OPTIMIZERS

COMMAND_LINE = "<command line>"

#: arguments the run configuration already sets directly, so ``optimizer_args`` may not repeat them
_DIRECT_OPTIMIZER_ARGS = frozenset({"params", "lr", "momentum", "weight_decay"})


@dataclass
class RunConfig:
    """Everything ``run_training`` needs; plain data so it can be written next to the results."""

    schedule: str | None = None
    model: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    initial_weights: str | None = None
    resume_from: str | None = None
    dataset: str | None = None
    data_dir: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    val_fraction: float = 0.1
    optimizer: str = "sgd"
    optimizer_args: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    threads: int | None = None
    max_steps_per_epoch: int | None = None
    max_eval_batches: int | None = None
    checkpoint_every: int = 1
    out_dir: str | None = None
    runs_dir: str = "runs"
    name: str | None = None
    auto_dependency: bool = False
    prune_normalized: bool = False
    narrow_heads: bool = False
    round_to: int = 1
    compact: bool = True
    int8: bool = True
    amp: str | None = None
    channels_last: bool = False
    sync_batchnorm: bool = False
    deterministic: bool = False
    quiet: bool = False
    strict: bool = False
    pruner: str | None = None  # the NNI pruner of an NNI config_list that names none

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = COMMAND_LINE) -> RunConfig:
        """Validate a plain mapping (e.g. a resolved ``config.yaml``) and build the config."""
        _validate(dict(data), _no_location(source), source)
        return cls(**{**cls().to_dict(), **data})


def _no_location(source: str) -> Callable[..., SourceLocation]:
    return lambda path, key=False: SourceLocation(source)


def _describe_path(path: Iterable[Any]) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "(top level)"


def _schema_problems(data: Any, locate: Callable[[tuple], SourceLocation]) -> list[Problem]:
    validator = Draft202012Validator(CONFIG_SCHEMA)
    problems: list[Problem] = []
    for error in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties":
            extra = (
                sorted(set(error.instance) - set(FIELDS), key=str) if isinstance(error.instance, dict) else []
            )
            for key in extra:
                problems.append(
                    Problem(
                        f"unknown setting '{key}'",
                        _safe_locate(locate, (*path, key), key=True),
                        hint=_suggest(key, FIELDS),
                    )
                )
            continue
        problems.append(
            Problem(
                f"{_describe_path(path)}: {error.message}",
                _safe_locate(locate, path),
                hint=_schema_hint(path),
            )
        )
    problems.sort(key=lambda p: (p.location.line or 0) if p.location else 0)
    return problems


def _safe_locate(
    locate: Callable[..., SourceLocation], path: tuple, *, key: bool = False
) -> SourceLocation | None:
    try:
        return locate(path, key=True) if key else locate(path)
    except Exception:  # a location is a courtesy; never let it hide the real problem
        return None


def _schema_hint(path: tuple) -> str | None:
    if not path:
        return "a run configuration is a mapping of settings, e.g. 'epochs: 10'"
    spec = CONFIG_SCHEMA["properties"].get(str(path[0]), {})
    if "enum" in spec:
        return "choose one of: " + ", ".join(str(v) for v in spec["enum"])
    return spec.get("description")


def _suggest(key: str, choices: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(str(key).replace("-", "_"), list(choices), n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return "known settings: " + ", ".join(choices)


def _optimizer_problems(data: Mapping[str, Any], locate: Callable[[tuple], SourceLocation]) -> list[Problem]:
    """``optimizer_args`` must be arguments the chosen torch optimizer really takes."""
    name = data.get("optimizer", RunConfig.optimizer)
    args = data.get("optimizer_args") or {}
    if name not in OPTIMIZERS or not isinstance(args, dict):
        return []
    import torch

    accepted = (
        set(inspect.signature(getattr(torch.optim, OPTIMIZERS[name])).parameters) - _DIRECT_OPTIMIZER_ARGS
    )
    problems = []
    for key in args:
        if key in _DIRECT_OPTIMIZER_ARGS:
            problems.append(
                Problem(
                    f"optimizer_args.{key} is a setting of its own",
                    _safe_locate(locate, ("optimizer_args", key)),
                    hint=f"write '{key}: ...' at the top level instead",
                )
            )
        elif key not in accepted:
            problems.append(
                Problem(
                    f"{OPTIMIZERS[name]} has no argument '{key}'",
                    _safe_locate(locate, ("optimizer_args", key)),
                    hint="accepted: " + ", ".join(sorted(accepted)),
                )
            )
    return problems


def _validate(data: Any, locate: Callable[[tuple], SourceLocation], source: str) -> None:
    problems = _schema_problems(data, locate)
    if not problems and isinstance(data, dict):
        problems = _optimizer_problems(data, locate)
    if problems:
        raise ConfigError(
            f"{source}: invalid run configuration: {len(problems)} problem(s)",
            problems=problems,
            hint="see docs/run.md for every setting and its type",
        )


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate one configuration file; relative ``schedule`` paths become absolute."""
    from prunecli.schedule import yamlio

    path = os.fspath(path)
    try:
        data, locate = yamlio.load_yaml(pathlib.Path(path), error_type=ConfigError, what="run configuration")
    except yaml.YAMLError as exc:  # e.g. control characters, rejected before parsing starts
        raise ConfigError(
            f"{path} is not valid YAML text: {exc}",
            location=SourceLocation(path),
            hint="remove control characters and save the file as UTF-8 text",
        ) from None
    _validate(data, locate, path)
    base = os.path.dirname(os.path.abspath(path))
    for key in (
        "schedule",
        "initial_weights",
        "resume_from",
    ):  # file paths inside a config are relative to it
        if data.get(key):
            data[key] = os.path.normpath(os.path.join(base, os.path.expanduser(data[key])))
    return dict(data)


def load_config(path: str | os.PathLike) -> RunConfig:
    """Load a configuration file on top of the built-in defaults."""
    return RunConfig(**{**RunConfig().to_dict(), **read_config_file(path)})


def parse_set_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``--set key=value`` pairs; values are read as YAML so numbers, booleans and lists work."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(
                f"--set expects key=value, got '{pair}'",
                location=SourceLocation(COMMAND_LINE),
                hint="for example --set batch_size=64",
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if "." in key:  # nested: dataset_options.size=100
            head, _, tail = key.partition(".")
            nested = result.setdefault(head, {})
            if not isinstance(nested, dict):
                raise ConfigError(f"--set {head} given both as a value and as a mapping")
            nested[tail] = value
        else:
            result[key] = value
    return result


def merge_config(
    *layers: Mapping[str, Any], source: str = COMMAND_LINE, base: RunConfig | None = None
) -> RunConfig:
    """Apply layers of settings (later wins; mapping-valued settings merge key by key) and validate."""
    merged: dict[str, Any] = (base or RunConfig()).to_dict()
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    _validate(merged, _no_location(source), source)
    return RunConfig(**merged)
