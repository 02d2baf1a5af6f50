"""Turning a ``--device`` value into a ``torch.device``: the one place that knows the rules.

``prunecli run``, ``prunecli report`` (latency) and ``prunecli sensitivity`` all accept ``auto``,
``cpu``, ``cuda`` and ``cuda:N``; asking for a GPU that this machine does not have is a user error
raised here, before any work starts, rather than a CUDA crash halfway through.
"""

from __future__ import annotations

import torch

from prunecli.errors import ConfigError

DEVICE_CHOICES_HINT = "use cpu, cuda, cuda:N or auto"


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; every other name must exist on this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"unknown device {name!r}", hint=DEVICE_CHOICES_HINT) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} requested but CUDA is not available on this machine",
                hint="use --device cpu (or auto)",
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"device {name!r} requested but this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})",
                hint="use --device cuda (the first GPU) or name one that exists",
            )
    return device
