"""Training continues after thinning: optimizer state follows the new shapes, loss keeps falling."""

from __future__ import annotations

import pytest
import torch
from support.patterns import build
from torch import nn

from prunecli.thinning import thin_model

OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01),
}


def _step(model, opt, x, y) -> float:
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return float(loss)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_state_is_sliced_and_training_continues(name):
    model, _ = build("conv_bn")
    model.train()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 8, 8, generator=gen)
    y = torch.randint(0, 3, (16,), generator=gen)
    opt = OPTIMIZERS[name](model.parameters())
    for _ in range(3):
        _step(model, opt, x, y)
    with torch.no_grad():
        model.conv1.weight[[0, 2, 5]] = 0
        model.conv1.bias[[0, 2, 5]] = 0
        model.bn1.weight[[0, 2, 5]] = 0
        model.bn1.bias[[0, 2, 5]] = 0
    ids_before = [id(p) for g in opt.param_groups for p in g["params"]]
    old_momentum = {
        k: v.clone() for k, v in opt.state[model.conv2.weight].items() if torch.is_tensor(v) and v.dim()
    }
    thin_model(model, x[:2], optimizer=opt)
    assert model.conv1.out_channels == 5
    assert [id(p) for g in opt.param_groups for p in g["params"]] == ids_before
    for p in model.parameters():
        for key, value in opt.state[p].items():
            if torch.is_tensor(value) and value.dim():
                assert value.shape == p.shape, (key, value.shape, p.shape)
    kept = [1, 3, 4, 6, 7]
    for key, old in old_momentum.items():
        torch.testing.assert_close(opt.state[model.conv2.weight][key], old[:, kept])
    losses = [_step(model, opt, x, y) for _ in range(15)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert model.conv1.weight.grad.shape == model.conv1.weight.shape
