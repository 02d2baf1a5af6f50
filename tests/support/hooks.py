"""The compression scheduler's own six hooks driving a short training, as ``prunecli run`` calls them.

Tests of the other tools' hook APIs compare their masks with these, step by step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from prunecli.compression import build_compression


def scheduler_masks(
    schedule: object,
    model: nn.Module,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    epochs: int,
    optimizer: torch.optim.Optimizer,
) -> list[dict[str, torch.Tensor]]:
    """Train ``epochs`` passes over ``batches`` (cross-entropy); the masks after every step."""
    steps = len(batches)
    sched = build_compression(schedule, model, optimizer, steps_per_epoch=steps)
    seen = []
    for epoch in range(epochs):
        sched.on_epoch_begin(epoch, optimizer)
        for step, (x, y) in enumerate(batches):
            sched.on_minibatch_begin(epoch, step, steps, optimizer)
            loss = nn.functional.cross_entropy(model(x), y)
            loss = sched.before_backward_pass(epoch, step, steps, loss, optimizer)
            optimizer.zero_grad()
            loss.backward()
            sched.before_parameter_optimization(epoch, step, steps, optimizer)
            optimizer.step()
            sched.on_minibatch_end(epoch, step, steps, optimizer)
            seen.append({n: m.clone() for n, m in sched.masks.items() if m is not None})
        sched.on_epoch_end(epoch, optimizer)
    return seen


def batches(count: int, shape: tuple[int, ...] = (4, 3, 4, 4), classes: int = 4, seed: int = 1):
    """``count`` fixed (inputs, labels) batches."""
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(*shape, generator=g), torch.randint(0, classes, (shape[0],), generator=g))
        for _ in range(count)
    ]
