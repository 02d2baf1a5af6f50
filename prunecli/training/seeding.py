"""Seeds and random-number-generator states.

Every epoch reseeds python, numpy and torch from ``(seed, epoch)``, so an epoch's data order and
augmentations do not depend on what ran before it: a run resumed at epoch k reproduces the epochs
an uninterrupted run would have run, bit for bit (on the same device and library versions).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

_MIX = 1_000_003  # a prime, so (seed, epoch) pairs map to distinct seeds for any realistic run


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * _MIX + epoch + 1) % (2**63 - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def set_deterministic(enabled: bool) -> None:
    # the first call costs about a second of start-up: skip it when nothing would change
    if enabled or torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(enabled, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.deterministic = enabled
        torch.backends.cudnn.benchmark = not enabled


def rng_state() -> dict[str, Any]:
    """Plain-data snapshot of every generator (loadable with ``torch.load(weights_only=True)``)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
