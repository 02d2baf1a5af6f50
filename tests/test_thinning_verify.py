"""Verification catches a wrong thinning, names the first diverging layer and leaves the model as it was."""

from __future__ import annotations

import pytest
import torch
from test_thinning_fixtures import build

from prunecli.errors import ThinningError
from prunecli.thinning import execute as execute_module
from prunecli.thinning import thin_model


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_wrong_slicing_is_caught_and_everything_is_restored(monkeypatch):
    model, x = build("preact_residual")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(x).sum().backward()
    opt.step()
    with torch.no_grad():
        model.conv1.weight[[1, 2]] = 0
        model.bn2.weight[[1, 2]] = 0
        model.bn2.bias[[1, 2]] = 0
        expected = model(x)
    before = _snapshot(model)
    momentum = opt.state[model.conv1.weight]["momentum_buffer"].clone()
    mask = torch.ones_like(model.conv1.weight)
    masks = {"conv1.weight": mask}
    original = execute_module._slice_tensor

    def wrong(model_, name, dim, idx, *args):
        if name == "conv2.weight":
            idx = list(reversed(idx))  # keeps the right count but the wrong channels
        return original(model_, name, dim, idx, *args)

    monkeypatch.setattr(execute_module, "_slice_tensor", wrong)
    with pytest.raises(ThinningError) as info:
        thin_model(model, x, optimizer=opt, masks=masks)
    assert "conv2" in info.value.message
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k in before:
        torch.testing.assert_close(after[k], before[k])
    assert model.conv1.out_channels == 6 and model.conv2.in_channels == 6
    assert masks["conv1.weight"] is mask
    torch.testing.assert_close(opt.state[model.conv1.weight]["momentum_buffer"], momentum)
    torch.testing.assert_close(model(x), expected)


def test_masked_weights_are_restored_when_verification_fails(monkeypatch):
    model, x = build("conv_bn")
    weight = model.conv1.weight.detach().clone()
    mask = torch.ones_like(weight)
    mask[3] = 0
    with torch.no_grad():
        model.conv1.bias[3] = 0
    monkeypatch.setattr("prunecli.thinning.thin.mismatch", lambda a, b: "forced")
    with pytest.raises(ThinningError):
        thin_model(model, x, masks={"conv1.weight": mask})
    torch.testing.assert_close(model.conv1.weight.detach(), weight)
