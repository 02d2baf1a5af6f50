"""Verification catches a wrong thinning, names the first diverging layer and leaves the model as it was."""

from __future__ import annotations

import copy

import pytest
import torch
from support.patterns import build
from support.synthetic import exercise, zero_channels

from prunecli.errors import ThinningError
from prunecli.graph import build_dependency_graph
from prunecli.thinning import execute as execute_module
from prunecli.thinning import thin_model
from prunecli.thinning import verify as verify_module


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
    monkeypatch.setattr(verify_module.Comparison, "passed", property(lambda self: False))
    with pytest.raises(ThinningError):
        thin_model(model, x, masks={"conv1.weight": mask})
    torch.testing.assert_close(model.conv1.weight.detach(), weight)


# -- verification that cannot pass vacuously -------------------------------------------------
class ConstantHead(torch.nn.Module):
    """conv -> ReLU -> conv -> pool -> linear, the linear zero-initialised (as torchvision's ViT head)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 6, 3, padding=1)
        self.fc = torch.nn.Linear(6, 4)
        torch.nn.init.zeros_(self.fc.weight)
        torch.nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        x = self.conv2(torch.relu(self.conv1(x)))
        return self.fc(x.mean((2, 3)))


def _constant_head() -> tuple[ConstantHead, torch.Tensor]:
    torch.manual_seed(0)
    model = ConstantHead().eval()
    with torch.no_grad():
        model.conv1.weight[[1, 5]] = 0
        model.conv1.bias[[1, 5]] = 0
    return model, torch.randn(2, 3, 8, 8)


def _reverse_slicing_of(monkeypatch, tensor: str) -> None:
    original = execute_module._slice_tensor

    def wrong(model_, name, dim, idx, *args):
        if name == tensor:
            idx = list(reversed(idx))  # the right count, the wrong channels
        return original(model_, name, dim, idx, *args)

    monkeypatch.setattr(execute_module, "_slice_tensor", wrong)


def test_constant_output_is_reported_and_the_features_carry_the_check():
    model, x = _constant_head()
    recipe = thin_model(model, x)
    check = recipe.checks[-1]
    assert check["status"] == "verified" and check["basis"] == "features"
    assert check["feature_module"] == "fc"
    output, features = check["comparisons"]
    assert output["name"] == "output" and not output["informative"] and output["variation"] == 0.0
    assert features["informative"] and features["variation"] > 0
    # the tolerance follows the features' own variation, not a fixed number
    assert features["tolerance"] == pytest.approx(verify_module.VARIATION_FRACTION * features["variation"])
    assert "barely varies" in check["summary"]


def test_wrong_thinning_of_a_constant_output_model_is_caught(monkeypatch):
    model, x = _constant_head()
    _reverse_slicing_of(monkeypatch, "conv2.weight")
    # the output alone cannot tell: it is zero whatever the thinning did
    wrong = copy.deepcopy(model)
    before = wrong(x)
    thin_model(wrong, x, verify=False)
    assert torch.equal(wrong(x), before)
    with pytest.raises(ThinningError) as info:
        thin_model(model, x)
    assert "features" in info.value.message and "conv2" in info.value.message
    assert model.conv1.out_channels == 8


def test_a_model_whose_output_and_features_ignore_the_input_is_unverifiable():
    model, x = _constant_head()
    with torch.no_grad():
        model.conv1.weight.zero_()  # conv1 now outputs its bias, whatever the input
    recipe = thin_model(model, x)
    check = recipe.checks[-1]
    assert check["status"] == "unverifiable" and check["basis"] == "none"
    assert "not verified" in check["summary"]


def test_tolerance_scales_with_variation_not_magnitude():
    ref = torch.tensor([1000.0, 1000.5])
    tol, informative = verify_module.tolerance_for(ref, variation=0.01)
    # float32 noise at magnitude 1000 (32 eps x 1000 = 3.8e-3) is more than 5 % of the variation
    assert not informative and tol == pytest.approx(32 * torch.finfo(torch.float32).eps * 1000.5)
    tol, informative = verify_module.tolerance_for(torch.tensor([1e-6, -2e-6]), variation=3e-6)
    assert informative and tol == pytest.approx(3e-10)


def _small_vit():
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(
        image_size=16, patch_size=4, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5
    )
    return model.eval(), torch.randn(1, 3, 16, 16)


def test_vit_with_zero_head_is_verified_on_its_features(monkeypatch):
    pytest.importorskip("torchvision")
    model, x = _small_vit()
    result = exercise(model, x, 0.5)
    assert result["removed_channels"] > 0 and result["output_mismatch"] is None
    check = result["verification"]
    assert check["status"] == "verified" and check["basis"] == "features"
    assert check["feature_module"] == "heads.head"
    # a wrong slicing of the MLP is caught although the output is identically zero
    model, x = _small_vit()
    graph = build_dependency_graph(model, x)
    zero_channels(model, graph, 0.5)
    _reverse_slicing_of(monkeypatch, "encoder.layers.encoder_layer_0.mlp.3.weight")
    with pytest.raises(ThinningError):
        thin_model(model, x, graph=graph)


def test_googlenet_with_input_independent_output_is_verified_on_its_features():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    result = exercise(model, torch.randn(1, 3, 64, 64), 0.5)
    assert result["output_mismatch"] is None
    output, features = result["verification"]["comparisons"]
    assert not output["informative"] and features["informative"]
    assert result["verification"]["status"] == "verified"
