"""Test hook: pause at a named point so a test can kill the process exactly there.

Set ``PRUNECLI_TEST_PAUSE_AT=name[:n][,name2[:n2]]`` to pause at the n-th time (default: first) the
program passes ``pause_point(name)``. While paused the process creates the file named by
``PRUNECLI_TEST_PAUSE_SIGNAL`` (if set) and then sleeps ``PRUNECLI_TEST_PAUSE_SECONDS`` (default 60).
Without these variables ``pause_point`` does nothing. Known points: ``checkpoint_write`` (after the
temporary file of a checkpoint is written and synced, before it is renamed over the checkpoint),
``file_write`` (the same moment for the run directory's other files); other packages add
their own (``epoch_mid``, ``thinning``).

``PRUNECLI_TEST_DIVERGE=RANK:EPOCH:TENSOR`` makes process ``RANK`` of a multi-process run flip the
first element of its mask ``TENSOR`` just before the masks are compared across processes after
epoch ``EPOCH`` (:func:`diverge`), so a test can show that the comparison stops the run.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import MutableMapping
from typing import Any

ENV_AT = "PRUNECLI_TEST_PAUSE_AT"
ENV_SIGNAL = "PRUNECLI_TEST_PAUSE_SIGNAL"
ENV_SECONDS = "PRUNECLI_TEST_PAUSE_SECONDS"
ENV_DIVERGE = "PRUNECLI_TEST_DIVERGE"

_passes: Counter[str] = Counter()


def _wanted() -> dict[str, int]:
    wanted: dict[str, int] = {}
    for item in os.environ.get(ENV_AT, "").split(","):
        name, _, count = item.strip().partition(":")
        if name:
            wanted[name] = int(count) if count.isdigit() else 1
    return wanted


def pause_point(name: str) -> None:
    """Pause here when the environment asks for it (tests only)."""
    if ENV_AT not in os.environ:
        return
    _passes[name] += 1
    if _wanted().get(name) != _passes[name]:
        return
    signal_file = os.environ.get(ENV_SIGNAL)
    if signal_file:
        with open(signal_file, "w", encoding="utf-8") as fh:
            fh.write(f"{name}:{_passes[name]}:{os.getpid()}\n")
    time.sleep(float(os.environ.get(ENV_SECONDS, "60")))


def diverge(masks: MutableMapping[str, Any], rank: int, epoch: int) -> None:
    """Flip one mask element on the process and epoch the environment names (tests only)."""
    spec = os.environ.get(ENV_DIVERGE)
    if not spec:
        return
    want_rank, want_epoch, name = spec.split(":", 2)
    if int(want_rank) != rank or int(want_epoch) != epoch or masks.get(name) is None:
        return
    mask = masks[name].clone()
    flat = mask.view(-1)
    flat[0] = 1 - flat[0]
    masks[name] = mask
