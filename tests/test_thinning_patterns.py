"""Thinning each hand-built pattern: shapes shrink, the function stays identical."""

from __future__ import annotations

import pytest
import torch
from support.patterns import PATTERNS, build
from support.synthetic import zero_channels
from torch import nn

from prunecli.errors import ThinningError
from prunecli.graph import build_dependency_graph
from prunecli.thinning import thin_model


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_zeroed_half_of_every_group_is_removed_and_output_is_unchanged(name):
    model, x = build(name)
    graph = build_dependency_graph(model, x)
    zeroed = zero_channels(model, graph, 0.5, seed=1)
    with torch.no_grad():
        expected = model(x)
    before = params(model)
    recipe = thin_model(model, x, graph=graph)
    with torch.no_grad():
        got = model(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert recipe.removed_channels == sum(len(v) for v in zeroed.values())
    if zeroed:
        assert params(model) < before


def test_conv_bn_shapes_and_attributes_after_thinning():
    model, x = build("conv_bn")
    with torch.no_grad():
        model.conv1.weight[[1, 4, 6]] = 0
        model.conv1.bias[[1, 4, 6]] = 0
    recipe = thin_model(model, x)
    assert model.conv1.out_channels == 5 and model.conv1.weight.shape == (5, 3, 3, 3)
    assert model.bn1.num_features == 5 and model.bn1.running_var.shape == (5,)
    assert model.conv2.in_channels == 5 and model.conv2.weight.shape == (6, 5, 3, 3)
    assert recipe.tensors["conv1.weight"] == [(0, [0, 2, 3, 5, 7])]
    assert recipe.modules["conv1"] == {"out_channels": 5}


def test_zero_filter_with_nonzero_bn_shift_is_kept():
    """The BN shift of a zero filter still reaches the next layer: removing it would change the output."""
    model, x = build("conv_bn")
    with torch.no_grad():
        model.conv1.weight[2] = 0
        model.conv1.bias[2] = 0
        model.bn1.bias[2] = 0.3
    recipe = thin_model(model, x)
    assert recipe.is_empty() and model.conv1.out_channels == 8


def test_zero_filter_and_zero_bn_affine_is_removed_even_with_running_stats():
    model, x = build("conv_bn")
    with torch.no_grad():
        model.conv1.weight[2] = 1.0  # a live filter...
        model.bn1.weight[2] = 0  # ...silenced by its BatchNorm
        model.bn1.bias[2] = 0
        model.bn1.running_mean[2] = 0.7
    thin_model(model, x)
    assert model.conv1.out_channels == 7


def test_channels_mode_removes_unread_outputs_but_filters_mode_does_not():
    model, x = build("conv_bn")
    with torch.no_grad():
        model.conv2.weight[:, [0, 5]] = 0  # nobody reads channels 0 and 5
    assert thin_model(model, x, mode="filters").is_empty()
    recipe = thin_model(model, x, mode="channels")
    assert model.conv1.out_channels == 6 and model.conv2.in_channels == 6
    assert recipe.tensors["bn1.running_mean"] == [(0, [1, 2, 3, 4, 6, 7])]


def test_channel_read_by_two_consumers_needs_both_zero_in_channels_mode():
    model, x = build("chunk")
    with torch.no_grad():
        model.left.weight[:, 1] = 0  # conv channel 1 feeds left; channel 5 feeds right
    assert thin_model(model, x, mode="channels").is_empty()
    with torch.no_grad():
        model.right.weight[:, 1] = 0
    thin_model(model, x, mode="channels")
    assert model.conv.out_channels == 6 and model.left.in_channels == 3 and model.right.in_channels == 3


def test_residual_channel_needs_every_producer_zero():
    model, x = build("preact_residual")
    with torch.no_grad():
        model.conv2.weight[3] = 0  # only one of the two producers of the residual channel 3
    assert thin_model(model, x, mode="filters").is_empty()
    with torch.no_grad():
        model.stem.weight[3] = 0
    thin_model(model, x, mode="filters")
    assert model.stem.out_channels == 7 and model.conv2.out_channels == 7 and model.bn1.num_features == 7


def test_every_group_keeps_at_least_one_channel():
    model, x = build("conv_bn")
    with torch.no_grad():
        model.conv1.weight.zero_()
        model.conv1.bias.zero_()
        expected = model(x)
    thin_model(model, x)
    assert model.conv1.out_channels == 1
    torch.testing.assert_close(model(x), expected)


def test_depthwise_groups_attribute_follows_the_kept_channels():
    model, x = build("depthwise")
    with torch.no_grad():
        model.pw1.weight[[0, 3]] = 0
        model.pw1.bias[[0, 3]] = 0
        expected = model(x)
    assert thin_model(model, x).is_empty()  # dw2's bias still feeds pw2 through channels 0 and 3
    with torch.no_grad():
        model.dw2.bias[[0, 1, 6, 7]] = 0
        expected = model(x)
    thin_model(model, x)
    assert (model.dw1.groups, model.dw1.in_channels, model.dw1.out_channels) == (6, 6, 6)
    assert (model.dw2.groups, model.dw2.in_channels, model.dw2.out_channels) == (6, 6, 12)
    assert model.pw2.in_channels == 12
    torch.testing.assert_close(model(x), expected)


def test_flatten_linear_drops_whole_spatial_blocks():
    model, x = build("flatten_linear")
    with torch.no_grad():
        model.conv.weight[2] = 0
        model.conv.bias[2] = 0
    thin_model(model, x)
    assert model.fc1.in_features == 5 * 16 and model.fc1.weight.shape == (10, 80)


def test_masks_are_applied_then_sliced_in_place():
    model, x = build("conv_bn")
    mask = torch.ones_like(model.conv1.weight)
    mask[[0, 7]] = 0
    with torch.no_grad():
        model.conv1.bias[[0, 7]] = 0
    masks = {"conv1.weight": mask, "conv2.weight": None}
    thin_model(model, x, masks=masks)
    assert masks["conv1.weight"].shape == (6, 3, 3, 3) and bool(masks["conv1.weight"].all())
    assert masks["conv2.weight"] is None


def test_mask_for_unknown_parameter_is_a_thinning_error():
    model, x = build("conv_bn")
    with pytest.raises(ThinningError):
        thin_model(model, x, masks={"nope.weight": torch.ones(1)})


def test_unknown_mode_is_a_thinning_error():
    model, x = build("conv_bn")
    with pytest.raises(ThinningError):
        thin_model(model, x, mode="rows")


def test_thinning_twice_composes():
    model, x = build("conv_bn")
    dense, _ = build("conv_bn")
    with torch.no_grad():
        model.conv1.weight[1] = 0
        model.conv1.bias[1] = 0
    first = thin_model(model, x)
    with torch.no_grad():
        model.conv1.weight[4] = 0  # original channel 5
        model.conv1.bias[4] = 0
        expected = model(x)
    second = thin_model(model, x)
    merged = first.then(second)
    assert merged.tensors["conv1.weight"] == [(0, [0, 2, 3, 4, 6, 7])]
    from prunecli.thinning import apply_recipe

    apply_recipe(dense, merged)
    dense.load_state_dict(model.state_dict())
    torch.testing.assert_close(dense(x), expected)


def test_zero_channel_padding_shortcut_keeps_the_padding_and_thins_the_rest():
    class PadShortcut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 1)
            self.branch = nn.Conv2d(4, 8, 1)
            self.head = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            x = self.stem(x)
            y = self.branch(x) + nn.functional.pad(x, (0, 0, 0, 0, 2, 2))
            return self.head(y).mean((2, 3))

    torch.manual_seed(0)
    model, x = PadShortcut().eval(), torch.randn(2, 3, 4, 4)
    graph = build_dependency_graph(model, x)
    stem = graph.group_of("stem.weight", 0)
    assert stem.prunable and ("branch.weight", 0, -2, 1, "out") in {
        (m.tensor, m.dim, m.offset, m.block, m.role) for m in stem.members
    }
    padding = [g for g in graph.groups_of("branch.weight", 0) if g is not stem]
    assert padding and all(not g.prunable and "pads channels" in g.reason for g in padding)
    with torch.no_grad():
        model.stem.weight[1] = 0
        model.stem.bias[1] = 0
        model.branch.weight[3] = 0  # branch channel 3 meets stem channel 1 after the 2-channel pad
        model.branch.bias[3] = 0
        expected = model(x)
    thin_model(model, x)
    assert model.stem.out_channels == 3 and model.branch.out_channels == 7 and model.head.in_channels == 7
    torch.testing.assert_close(model(x), expected)


def test_distiller_rule_removes_zero_filters_despite_bn_shift_and_bias():
    model, x = build("conv_bn")
    with torch.no_grad():
        model.conv1.weight[[2, 5]] = 0  # weights zero, bias and BatchNorm shift left as trained
        model.bn1.bias[[2, 5]] = 0.3
        model.bn1.running_mean[[2, 5]] = 0.1
    assert thin_model(model, x).is_empty()  # exact rule: the shift reaches conv2, keep them
    reference, _ = build("conv_bn")
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        for t in (reference.conv1.bias, reference.bn1.weight, reference.bn1.bias):
            t[[2, 5]] = 0
        expected = reference(x)
    thin_model(model, x, rule="distiller")
    assert model.conv1.out_channels == 6 and model.bn1.num_features == 6 and model.conv2.in_channels == 6
    torch.testing.assert_close(model(x), expected)


def test_distiller_rule_on_a_trained_resnet_removes_every_zeroed_filter():
    import prunecli.models as models
    model, _ = models.create_model("resnet20_cifar")
    model.train()
    with torch.no_grad():
        for _ in range(2):  # move the BatchNorm running statistics away from their initial values
            model(torch.randn(8, 3, 32, 32))
        for block in (model.layer1[0], model.layer2[1], model.layer3[2]):
            block.conv1.weight[::2] = 0
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    assert thin_model(model, x).is_empty()
    recipe = thin_model(model, x, rule="distiller")
    assert recipe.removed_channels == 8 + 16 + 32
    assert model.layer2[1].conv1.out_channels == 16 and model.layer2[1].conv2.in_channels == 16


def test_unknown_rule_is_a_thinning_error():
    model, x = build("conv_bn")
    with pytest.raises(ThinningError):
        thin_model(model, x, rule="approximately")
