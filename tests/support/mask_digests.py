"""Digests of the masks a schedule produces over a short seeded training run.

The Distiller-composition tests compare these against digests recorded with the hand-written
classes the compositions replaced: any change of any mask value at any step changes a digest.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunecli.compression import build_scheduler
from prunecli.schedule import load_schedule


def digest(masks: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(masks):
        mask = masks[name].detach().contiguous().cpu()
        h.update(f"{name}:{mask.dtype}:{tuple(mask.shape)}:".encode())
        h.update(mask.numpy().tobytes())
    return h.hexdigest()[:16]


def state_digest(state: Any) -> str:
    """A digest of a nested state (mappings, sequences, tensors, numbers), keys included."""
    h = hashlib.sha256()

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            for key in sorted(value, key=str):
                h.update(f"<{key}>".encode())
                walk(value[key])
        elif isinstance(value, (list, tuple)):
            h.update(f"[{len(value)}".encode())
            for item in value:
                walk(item)
        elif isinstance(value, torch.Tensor):
            tensor = value.detach().contiguous().cpu()
            h.update(f"{tensor.dtype}:{tuple(tensor.shape)}:".encode())
            h.update(tensor.numpy().tobytes())
        else:
            h.update(repr(value).encode())

    walk(state)
    return h.hexdigest()[:16]


def schedule_text(entry: str, policy: str, policy_args: str | None = None) -> str:
    """A one-pruner schedule: ``entry`` is the pruner's body (class and arguments)."""
    pruner = "{instance_name: p" + (f", args: {{{policy_args}}}" if policy_args else "") + "}"
    return f"version: 1\npruners:\n  p:\n    {entry}\npolicies:\n  - pruner: {pruner}\n    {policy}\n"


def run_digests(
    text: str,
    model_factory: Callable[[], nn.Module],
    *,
    epochs: int,
    steps: int,
    build: Mapping[str, Any] | None = None,
    with_state: bool = False,
) -> list[str]:
    """The masks' digest after every step's ``on_minibatch_begin`` of a seeded run, then the
    number of masked weights at the end (and, with ``with_state``, a digest of the pruners' state).

    ``build`` holds :func:`build_scheduler`'s options; ``traced: true`` (implied by
    ``auto_dependency`` and ``prune_normalized``) passes an example input to trace the model."""
    torch.manual_seed(0)
    random.seed(0)
    model = model_factory()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    options = dict(build or {})
    if options.pop("traced", False) or options.get("auto_dependency") or options.get("prune_normalized"):
        options["example_input"] = torch.randn(2, 3, 6, 6)
    scheduler = build_scheduler(load_schedule("p.yaml", text=text), model, optimizer, **options)
    digests = []
    for epoch in range(epochs):
        scheduler.on_epoch_begin(epoch, optimizer)
        for step in range(steps):
            scheduler.on_minibatch_begin(epoch, step, steps, optimizer)
            digests.append(digest({n: m for n, m in scheduler.masks.items() if m is not None}))
            loss = F.cross_entropy(model(torch.randn(4, 3, 6, 6)), torch.tensor([0, 1, 2, 3]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.on_minibatch_end(epoch, step, steps, optimizer)
        scheduler.on_epoch_end(epoch, optimizer)
    zeros = sum(int((m == 0).sum()) for m in scheduler.masks.values() if m is not None)
    digests.append(f"zeros={zeros}")
    if with_state:
        digests.append("state=" + state_digest(scheduler.state_dict()["policies"]))
    return digests
