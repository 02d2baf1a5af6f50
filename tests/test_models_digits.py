"""The quickstart pairing: resnet_digits learns the digits set to >= 95 % top-1 in a few epochs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunecli.data import load_dataset
from prunecli.models import create_model


def _accuracy(model: nn.Module, loader) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    model.train()
    return correct / total


@pytest.mark.slow
@pytest.mark.parametrize("width", [32, 16])  # 16: what pruning half the filters leaves
def test_resnet_digits_trains_to_95_percent(width: int) -> None:
    torch.manual_seed(0)
    bundle = load_dataset("digits", seed=0)
    model, _ = create_model("resnet_digits", dataset="digits", width=width)
    train, _, test = bundle.loaders(64, seed=0)
    epochs = 4
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=epochs * len(train))
    for _ in range(epochs):
        for x, y in train:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            sched.step()
    assert _accuracy(model, test) >= 0.95
