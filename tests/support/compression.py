"""Small models, schedules built in code and a training loop for the compression-runtime tests."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunecli.schedule.model import Component, Policy, Schedule


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


def make_schedule(
    components: dict[str, dict[str, tuple[str, dict[str, Any]]]],
    policies: list[tuple[str, str, dict[str, Any], dict[str, Any] | None]],
) -> Schedule:
    """components: section -> instance -> (class, args); policies: (kind, instance, timing, args)."""
    comps = {
        section: {name: Component(section, name, cls, dict(args)) for name, (cls, args) in entries.items()}
        for section, entries in components.items()
    }
    pols = []
    for order, (kind, instance, timing, args) in enumerate(policies):
        if "epochs" in timing:
            epochs = tuple(timing["epochs"])
            start, end, freq = epochs[0], epochs[-1] + 1, None
        else:
            start, end, freq = timing["starting_epoch"], timing["ending_epoch"], timing["frequency"]
            epochs = tuple(range(start, end, freq))
        pols.append(Policy(kind, instance, dict(args or {}), epochs, start, end, freq, order))
    return Schedule(None, "", 1, comps, pols)


def batches(steps: int, batch: int = 4, seed: int = 0, size: int = 8):
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(batch, 3, size, size, generator=gen), torch.randint(0, 10, (batch,), generator=gen))
        for _ in range(steps)
    ]


def train(
    scheduler, model, optimizer, epochs, steps: int = 2, start_epoch: int = 0, check=None
) -> list[float]:
    """Distiller's training-loop call sequence; ``check(epoch, step)`` runs after each step."""
    losses = []
    data = batches(steps)
    criterion = nn.CrossEntropyLoss()
    for epoch in range(start_epoch, epochs):
        scheduler.on_epoch_begin(epoch)
        for step, (x, y) in enumerate(data):
            scheduler.on_minibatch_begin(epoch, step, steps, optimizer)
            loss = criterion(model(x), y)
            loss = scheduler.before_backward_pass(epoch, step, steps, loss, optimizer=optimizer)
            optimizer.zero_grad()
            loss.backward()
            scheduler.before_parameter_optimization(epoch, step, steps, optimizer)
            optimizer.step()
            scheduler.on_minibatch_end(epoch, step, steps, optimizer)
            losses.append(loss.item())
            if check is not None:
                check(epoch, step)
        scheduler.on_epoch_end(epoch, optimizer, metrics={"min": losses[-1], "max": 0.5})
    return losses


def sparsity(t: torch.Tensor) -> float:
    return float((t == 0).sum()) / t.numel()


def zero_filters(t: torch.Tensor) -> int:
    return int((t.reshape(t.size(0), -1).abs().sum(dim=1) == 0).sum())


def zero_channels(t: torch.Tensor) -> int:
    return int((t.transpose(0, 1).reshape(t.size(1), -1).abs().sum(dim=1) == 0).sum())


class ResBlockNet(nn.Module):
    """Two convolutions whose outputs are added: their filters must be pruned together."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.a(x) + self.b(x))
        return self.fc(x.mean(dim=(2, 3)))
