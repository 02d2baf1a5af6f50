"""Refuse payload values that would need pickled code to load.

A checkpoint must load with ``torch.load(weights_only=True)``; that loader only rebuilds tensors and
plain data. Checking before writing turns a file nobody can open safely into an immediate, named error.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch

from prunecli.errors import CheckpointError

#: scalar types the weights-only unpickler rebuilds without running code
SCALAR_TYPES: tuple[type, ...] = (bool, int, float, str, bytes, type(None), torch.dtype, torch.device)
#: containers it rebuilds (exact types: a namedtuple or dict subclass is a class that needs importing)
CONTAINER_TYPES: tuple[type, ...] = (dict, OrderedDict, list, tuple, torch.Size)
TENSOR_TYPES: tuple[type, ...] = (torch.Tensor, torch.nn.Parameter)


class CheckpointPayloadError(CheckpointError, TypeError):
    """The program tried to store a value that is not plain data: a bug in the caller, not user input."""

    exit_code = 4
    kind = "internal error (checkpoint payload)"


def _where(path: tuple[Any, ...]) -> str:
    return "payload" + "".join(f"[{p!r}]" for p in path)


def _is_plain_key(key: Any) -> bool:
    if type(key) in SCALAR_TYPES:
        return True
    return type(key) is tuple and all(_is_plain_key(k) for k in key)


def check_plain(payload: Any, *, path: tuple[Any, ...] = ()) -> None:
    """Raise :class:`CheckpointPayloadError` naming the first value that is not plain data."""
    stack: list[tuple[tuple[Any, ...], Any]] = [(path, payload)]
    seen: set[int] = set()
    while stack:
        where, value = stack.pop()
        kind = type(value)
        if kind in SCALAR_TYPES or kind in TENSOR_TYPES:
            continue
        if kind not in CONTAINER_TYPES:
            raise CheckpointPayloadError(
                f"{_where(where)} is a {kind.__module__}.{kind.__qualname__}, which cannot be stored in a "
                "checkpoint that loads with torch.load(weights_only=True)",
                hint="convert it to tensors, dict/list/tuple, int, float, bool, str or None before saving "
                "(e.g. float(x) for numpy scalars, a dict for a namedtuple, a class name string for a class)",
            )
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, dict):
            for key, item in value.items():
                if not _is_plain_key(key):
                    raise CheckpointPayloadError(
                        f"{_where(where)} has a key of type {type(key).__qualname__} ({key!r}); "
                        "checkpoint keys must be str, int, float, bool or None",
                        hint="use the key's string form",
                    )
                stack.append(((*where, key), item))
        else:
            stack.extend(((*where, i), item) for i, item in enumerate(value))


def own_storage(tensor: torch.Tensor) -> torch.Tensor:
    """A CPU tensor whose storage holds only its own elements (a slice would save its whole base)."""
    tensor = tensor.detach().cpu()
    if tensor.untyped_storage().nbytes() > tensor.numel() * tensor.element_size():
        tensor = tensor.clone()
    return tensor


def stored_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` as a checkpoint stores it: CPU tensors, each with its own storage."""
    return {name: own_storage(value) for name, value in model.state_dict().items()}
