"""ADMM around an opaque fine-tuner: the hook adds the penalty's gradient, Z and U follow the rule."""

from __future__ import annotations

import torch
from torch import nn

from prunecli.iterative.admm import admm_train


def keep_largest_rows(fraction: float):
    """A projector: masks keeping the rows (filters) of largest L1 norm."""

    def projector(model: nn.Module):
        weight = model.weight.detach()
        keep = max(1, round(weight.size(0) * (1 - fraction)))
        order = weight.abs().sum(dim=1).argsort(descending=True)
        mask = torch.zeros_like(weight)
        mask[order[:keep]] = 1.0
        return {"weight": mask}

    return projector


def test_the_hook_adds_rho_times_w_minus_z_plus_u_to_the_gradient():
    torch.manual_seed(0)
    layer = nn.Linear(3, 4, bias=False)
    seen = {}

    def finetuner(model):
        model.zero_grad()
        (model(torch.ones(1, 3)).sum()).backward()
        seen["grad"] = model.weight.grad.clone()

    before = layer.weight.detach().clone()
    state = admm_train(layer, ["weight"], keep_largest_rows(0.5), finetuner, rho=0.5, iterations=1)
    plain = torch.ones(4, 3)  # d(sum(W x))/dW with x = ones
    z0 = before * keep_largest_rows(0.5)(layer)["weight"]  # the weights did not move: same ranking
    assert torch.allclose(seen["grad"], plain + 0.5 * (before - z0))
    # after the round: Z = proj(W + U) with U = 0, then U = W - Z
    assert torch.allclose(state.z["weight"], z0)
    assert torch.allclose(state.u["weight"], before - z0)
    assert not layer.weight._backward_hooks  # hooks are removed afterwards


def test_admm_training_drives_the_pruned_rows_towards_zero():
    torch.manual_seed(0)
    layer = nn.Linear(8, 6, bias=False)
    target = torch.randn(64, 8)

    def finetuner(model):  # a few steps of a loss with no reason to shrink any row
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(20):
            optimizer.zero_grad()
            (model(target) - target[:, :6]).pow(2).mean().backward()
            optimizer.step()

    import copy

    projector = keep_largest_rows(0.5)
    plain = copy.deepcopy(layer)
    admm_train(plain, ["weight"], projector, finetuner, rho=0.0, iterations=4)  # no penalty: plain training
    state = admm_train(layer, ["weight"], projector, finetuner, rho=5.0, iterations=4)
    dropped = state.z["weight"].abs().sum(dim=1) == 0
    assert dropped.sum() == 3
    assert layer.weight.detach()[dropped].abs().mean() < 0.5 * plain.weight.detach()[dropped].abs().mean()
