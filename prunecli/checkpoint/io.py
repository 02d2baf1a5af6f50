"""Save and load checkpoints without ever unpickling code.

Saving refuses anything but plain data and replaces the file atomically. Loading uses
``torch.load(weights_only=True)`` only; every way a file can be wrong (missing, empty, truncated,
another format, pickled classes, Distiller's original format, another layout) becomes a
:class:`CheckpointError` that names the file, says what was found and how to fix it.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from prunecli.errors import CheckpointError, SourceLocation
from prunecli.rundir import CHECKPOINTS, RunDir

from . import distiller, distiller_pickle
from .atomic import atomic_write
from .plain import check_plain
from .schema import FORMAT_NAME, build_checkpoint, validate_structure
from .sniff import PickleScan, describe, looks_like_torch_file, scan_pickle, unsafe_globals


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically; only tensors and plain data are accepted."""
    if not isinstance(payload, dict):
        raise TypeError(f"a checkpoint payload must be a dict, not {type(payload).__name__}")
    check_plain(payload)
    atomic_write(path, lambda fh: torch.save(payload, fh), pause_as="checkpoint_write")


def _missing(path: Path) -> CheckpointError:
    where = SourceLocation(str(path))
    holds = f"a run directory holds {', '.join(CHECKPOINTS)}"
    if path.is_dir():
        present = RunDir(path).present_checkpoints()
        hint = f"pass a file inside it, e.g. {present[0]}" if present else f"pass a checkpoint file ({holds})"
        return CheckpointError("is a directory, not a checkpoint file", location=where, hint=hint)
    return CheckpointError("checkpoint file does not exist", location=where, hint=f"check the path; {holds}")


def _unsafe(path: Path, scan: PickleScan, exc: BaseException) -> CheckpointError:
    names = unsafe_globals(scan)
    if not names:  # the weights-only reader stopped on damaged bytes, not on a class
        return _unreadable(path, exc)
    return CheckpointError(
        "refused: loading this file would import and run Python code it names "
        f"({', '.join(names[:8])}); nothing from it was executed",
        location=SourceLocation(str(path)),
        hint="only load checkpoints written by prunecli or Distiller (or converted to plain tensors and dicts); "
        "if you trust the file, re-save it in its own environment as plain data (tensors, dicts, lists, numbers)",
    )


def _first_sentence(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text.split(". ")[0][:160]


def _unreadable(path: Path, exc: BaseException) -> CheckpointError:
    found = describe(path)
    where = SourceLocation(str(path))
    if looks_like_torch_file(path):
        return CheckpointError(
            f"the checkpoint is truncated or corrupt ({found}; the reader said: {_first_sentence(exc)})",
            location=where,
            hint="the file was probably cut short by a full disk, an interrupted copy or download; "
            "use an earlier checkpoint (e.g. best.pt) or copy it again",
        )
    return CheckpointError(
        f"not a PyTorch checkpoint: found {found}",
        location=where,
        hint="pass a .pt/.pth/.pth.tar file written by prunecli or torch.save",
    )


class _ClassesRefused(Exception):
    """The weights-only reader stopped on a class (or on damaged pickle bytes)."""


def _guarded(path: Path, load: Callable[[], Any]) -> Any:
    """Run ``load`` and turn every way reading can fail into a :class:`CheckpointError`."""
    try:
        return load()
    except CheckpointError:
        raise
    except pickle.UnpicklingError as exc:  # a refused class, or damaged pickle bytes: the scan tells which
        raise _ClassesRefused(exc) from None
    except FileNotFoundError:
        raise _missing(path) from None
    except IsADirectoryError:
        raise _missing(path) from None
    except PermissionError:
        raise CheckpointError(
            "permission denied reading the checkpoint",
            location=SourceLocation(str(path)),
            hint="make the file readable (chmod) or copy it somewhere you can read",
        ) from None
    except MemoryError:
        raise _unreadable(path, MemoryError("a size field asks for more memory than exists")) from None
    except Exception as exc:  # torch reports damaged files with many exception types
        raise _unreadable(path, exc) from None


def _read(path: Path) -> Any:
    """Weights-only first; a Distiller original is then read with its few classes stood in for."""
    try:
        return _guarded(path, lambda: torch.load(path, map_location="cpu", weights_only=True))
    except _ClassesRefused as refused:
        scan = scan_pickle(path)
        if not distiller.is_pickled_distiller(scan):
            raise _unsafe(path, scan, refused.args[0]) from None
        first = refused.args[0]
    try:
        return _guarded(path, lambda: distiller_pickle.plain(distiller_pickle.load_pickled(path)))
    except _ClassesRefused as again:
        raise _unreadable(path, again.args[0] if again.args else first) from None  # damaged bytes


def _strip_data_parallel(state_dict: dict[str, Any]) -> dict[str, Any]:
    """A state_dict saved from ``nn.DataParallel`` has every name prefixed with ``module.``."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _plain_state_dict(data: dict[str, Any]) -> bool:
    return bool(data) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items())


def _wraps_state_dict(data: dict[str, Any]) -> bool:
    return isinstance(data.get("state_dict"), dict) and _plain_state_dict(data["state_dict"])


def _from_state_dict(data: dict[str, Any], path: str) -> dict[str, Any]:
    return build_checkpoint(state_dict=_strip_data_parallel(data), extras={"source": "state_dict"})


def _from_wrapped_state_dict(data: dict[str, Any], path: str) -> dict[str, Any]:
    epoch = data.get("epoch")
    return build_checkpoint(
        state_dict=_strip_data_parallel(data["state_dict"]),
        epoch=epoch if type(epoch) is int else None,
        extras={"source": "state_dict", "other_keys": sorted(str(k) for k in data if k != "state_dict")},
    )


#: (recognises the loaded dict, turns it into the prunecli layout), tried in order
_LAYOUTS: list[tuple[Callable[[dict[str, Any]], bool], Callable[[dict[str, Any], str], dict[str, Any]]]] = [
    (lambda data: data.get("format") == FORMAT_NAME, validate_structure),
    (distiller.is_converted, distiller.from_converted),
    (_plain_state_dict, _from_state_dict),
    (_wraps_state_dict, _from_wrapped_state_dict),
]


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a prunecli checkpoint, a converted Distiller checkpoint or a bare state_dict.

    Always returns the prunecli layout (docs/checkpoint-format.md). A bare state_dict or a Distiller
    file has ``model`` None; ``extras['source']`` says where it came from.
    """
    path = Path(path)
    if not path.is_file():
        raise _missing(path)
    if not looks_like_torch_file(path):
        raise _unreadable(path, ValueError("not a PyTorch file"))
    data = _read(path)
    where = SourceLocation(str(path))
    if isinstance(data, dict):
        for recognises, convert in _LAYOUTS:
            if recognises(data):
                return convert(data, str(path))
    if isinstance(data, dict) and "format" in data:
        raise CheckpointError(
            f"unknown checkpoint format {data.get('format')!r}",
            location=where,
            hint=f'prunecli writes format "{FORMAT_NAME}"; pass a file written by prunecli',
        )
    keys = ", ".join(sorted(map(str, data))[:8]) if isinstance(data, dict) else ""
    found = f"a dict with keys {keys}" if keys else f"a {type(data).__name__}"
    raise CheckpointError(
        f"a PyTorch file, but not a model checkpoint: it holds {found}",
        location=where,
        hint="pass a prunecli checkpoint, a state_dict (name -> tensor) or a dict with a 'state_dict' key",
    )
