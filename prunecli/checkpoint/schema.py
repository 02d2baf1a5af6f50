"""The prunecli checkpoint dictionary: its keys, their types, its version, and a builder.

Version policy: ``format_version`` grows when a reader of the old version would misread a new file.
Adding an optional key does not bump it (readers ignore keys they do not know); a reader refuses a
file whose version is newer than :data:`FORMAT_VERSION` instead of guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from prunecli.errors import CheckpointError, Problem, SourceLocation

FORMAT_NAME = "prunecli-checkpoint"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Field:
    types: tuple[type, ...]
    meaning: str
    default: Any = None


def _opt(*types: type) -> tuple[type, ...]:
    return (*types, type(None))


#: key -> accepted types, meaning, default used by :func:`build_checkpoint` (docs/checkpoint-format.md)
FIELDS: dict[str, Field] = {
    "format": Field((str,), f'always "{FORMAT_NAME}"', FORMAT_NAME),
    "format_version": Field((int,), "layout version of this dictionary", FORMAT_VERSION),
    "model": Field(_opt(dict), "ModelSpec.to_dict(): how to rebuild the dense model; None if unknown"),
    "recipe": Field(
        _opt(dict), "ThinningRecipe.to_dict() that reshapes the dense model; None if not thinned"
    ),
    "state_dict": Field((dict,), "model.state_dict() of the unwrapped model (thin shapes if thinned)"),
    "masks": Field((dict,), "parameter name -> pruning mask tensor (or None)"),
    "optimizer": Field(_opt(dict), "optimizer.state_dict()"),
    "optimizer_type": Field(_opt(str), 'optimizer class name, e.g. "SGD"'),
    "lr_scheduler": Field(_opt(dict), "learning-rate scheduler state_dict()"),
    "scheduler": Field(_opt(dict), "compression scheduler state_dict()"),
    "epoch": Field(_opt(int), "last completed epoch (0-based); None for a model-only file"),
    "schedule_text": Field(_opt(str), "the schedule YAML text the run used"),
    "metrics": Field((list,), "one dict of metrics per completed epoch"),
    "rng": Field(_opt(dict), "random-number-generator states for an exact resume"),
    "extras": Field((dict,), "anything else, plain data only"),
}


def _default(key: str) -> Any:
    default = FIELDS[key].default
    if default is None and dict in FIELDS[key].types and type(None) not in FIELDS[key].types:
        return {}
    if default is None and list in FIELDS[key].types:
        return []
    return default


def _as_plain(value: Any) -> Any:
    """ModelSpec / ThinningRecipe objects are stored through their ``to_dict()``."""
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else value


def build_checkpoint(*, state_dict: Mapping[str, torch.Tensor], **fields: Any) -> dict[str, Any]:
    """A complete checkpoint dict: unspecified keys get their defaults; unknown keys are refused."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise TypeError(f"unknown checkpoint key(s) {unknown}; known: {sorted(FIELDS)}")
    checkpoint = {key: _default(key) for key in FIELDS}
    checkpoint.update({key: _as_plain(value) for key, value in fields.items()})
    checkpoint["state_dict"] = dict(state_dict)
    checkpoint["format"] = FORMAT_NAME
    checkpoint["format_version"] = FORMAT_VERSION
    return checkpoint


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join("None" if t is type(None) else t.__name__ for t in types)


def validate_structure(checkpoint: dict[str, Any], path: str) -> dict[str, Any]:
    """Check keys and types of a prunecli checkpoint; raise one error listing every problem."""
    where = SourceLocation(path)
    version = checkpoint.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise CheckpointError(
            f"written by a newer prunecli (format_version {version}); this prunecli reads up to "
            f"format_version {FORMAT_VERSION}",
            location=where,
            hint="upgrade prunecli (pip install -U prunecli)",
        )
    problems: list[Problem] = []
    for key, spec in FIELDS.items():
        if key not in checkpoint:
            problems.append(Problem(f"missing key {key!r} ({spec.meaning})"))
            continue
        value = checkpoint[key]
        if not isinstance(value, spec.types) or (isinstance(value, bool) and bool not in spec.types):
            problems.append(
                Problem(f"key {key!r} is {type(value).__name__}, expected {_type_names(spec.types)}")
            )
    if not problems:
        problems.extend(_tensor_maps(checkpoint))
    if checkpoint.get("format") != FORMAT_NAME:
        problems.append(Problem(f"key 'format' is {checkpoint.get('format')!r}, expected {FORMAT_NAME!r}"))
    if isinstance(version, int) and version < 1:
        problems.append(Problem(f"key 'format_version' is {version}, expected 1..{FORMAT_VERSION}"))
    if problems:
        raise CheckpointError(
            "not a valid prunecli checkpoint",
            location=where,
            problems=problems,
            hint="the file is damaged or was edited by hand; use an earlier checkpoint or re-run training",
        )
    return checkpoint


def _tensor_maps(checkpoint: dict[str, Any]) -> list[Problem]:
    problems = []
    for key, allow_none in (("state_dict", False), ("masks", True)):
        for name, value in checkpoint[key].items():
            ok = isinstance(value, torch.Tensor) or (allow_none and value is None)
            if not isinstance(name, str) or not ok:
                problems.append(Problem(f"{key}[{name!r}] is {type(value).__name__}, expected a tensor"))
                break
    return problems
