"""Dependency groups of hand-built modules: one test per pattern, checked member by member."""

from __future__ import annotations

import pytest
import torch
from support.patterns import build
from torch import nn

from prunecli.errors import GraphError
from prunecli.graph import Member, build_dependency_graph


def graph_of(name: str):
    model, x = build(name)
    return build_dependency_graph(model, x)


def members(group) -> set[tuple]:
    return {(m.tensor, m.dim, m.offset, m.block, m.role) for m in group.members}


def test_conv_bn_group_holds_conv_bn_and_consumer():
    g = graph_of("conv_bn")
    group = g.group_of("conv1.weight", 0)
    assert group.size == 8 and group.prunable
    assert members(group) == {
        ("conv1.weight", 0, 0, 1, "out"),
        ("conv1.bias", 0, 0, 1, "out"),
        ("bn1.weight", 0, 0, 1, "out"),
        ("bn1.bias", 0, 0, 1, "out"),
        ("bn1.running_mean", 0, 0, 1, "out"),
        ("bn1.running_var", 0, 0, 1, "out"),
        ("conv2.weight", 1, 0, 1, "in"),
    }
    assert g.group_of("bn1.running_var", 0) is group


def test_model_input_and_output_are_not_prunable():
    g = graph_of("conv_bn")
    inp = g.group_of("conv1.weight", 1)
    out = g.group_of("fc.weight", 0)
    assert not inp.prunable and "input" in inp.reason
    assert not out.prunable and "output" in out.reason


def test_preact_residual_couples_stem_block_output_and_bn_before_conv():
    g = graph_of("preact_residual")
    group = g.group_of("stem.weight", 0)
    tensors = {(m.tensor, m.dim) for m in group.members}
    assert {
        ("conv2.weight", 0),
        ("bn1.weight", 0),
        ("conv1.weight", 1),
        ("bn_out.running_mean", 0),
        ("fc.weight", 1),
    } <= tensors
    assert group.prunable and group.size == 8
    inner = g.group_of("conv1.weight", 0)
    assert inner is not group and {m.tensor for m in inner.members} >= {"bn2.weight", "conv2.weight"}


def test_concat_gives_the_consumer_an_offset_per_input():
    g = graph_of("concat")
    a, b = g.group_of("a.weight", 0), g.group_of("b.weight", 0)
    assert a.size == 4 and b.size == 6
    assert ("c.weight", 1, 0, 1, "in") in members(a)
    assert ("c.weight", 1, -4, 1, "in") in members(b)
    # group channel c of b <-> index c + 4 of the consumer
    member = next(m for m in b.members if m.tensor == "c.weight")
    assert list(member.indices(2)) == [6]
    assert [gr.index for gr in g.groups_of("c.weight", 1)] == sorted([a.index, b.index])


def test_chunk_ties_the_halves_index_wise():
    g = graph_of("chunk")
    group = g.group_of("conv.weight", 0)
    assert group.size == 4 and group.prunable
    assert ("conv.weight", 0, 0, 1, "out") in members(group)
    assert ("conv.weight", 0, -4, 1, "out") in members(group)
    assert ("left.weight", 1, 0, 1, "in") in members(group)
    assert ("right.weight", 1, 0, 1, "in") in members(group)


def test_flatten_to_linear_uses_spatial_blocks_and_linear_to_linear():
    g = graph_of("flatten_linear")
    group = g.group_of("conv.weight", 0)
    assert ("fc1.weight", 1, 0, 16, "in") in members(group)
    hidden = g.group_of("fc1.weight", 0)
    assert members(hidden) == {
        ("fc1.weight", 0, 0, 1, "out"),
        ("fc1.bias", 0, 0, 1, "out"),
        ("fc2.weight", 1, 0, 1, "in"),
    }


def test_depthwise_ties_input_and_output_and_multiplier_makes_blocks():
    g = graph_of("depthwise")
    group = g.group_of("pw1.weight", 0)
    got = members(group)
    assert ("dw1.weight", 0, 0, 1, "out") in got
    assert ("bn.weight", 0, 0, 1, "out") in got
    assert ("dw2.weight", 0, 0, 2, "out") in got  # channel multiplier 2: two filters per channel
    assert ("pw2.weight", 1, 0, 2, "in") in got
    assert group.size == 8


def test_grouped_conv_ties_the_same_position_in_every_group():
    g = graph_of("grouped")
    group = g.group_of("conv1.weight", 0)
    assert group.size == 4
    assert {
        ("conv1.weight", 0, 0, 1, "out"),
        ("conv1.weight", 0, -4, 1, "out"),
        ("grouped.weight", 1, 0, 1, "in"),
    } <= members(group)
    out = g.group_of("grouped.weight", 0)
    assert out.size == 6 and ("grouped.weight", 0, -6, 1, "out") in members(out)


def test_squeeze_excite_gate_shares_the_gated_channels():
    g = graph_of("squeeze_excite")
    group = g.group_of("conv.weight", 0)
    got = members(group)
    assert {
        ("fc1.weight", 1, 0, 1, "in"),
        ("fc2.weight", 0, 0, 1, "out"),
        ("fc2.bias", 0, 0, 1, "out"),
        ("out.weight", 1, 0, 1, "in"),
    } <= got
    assert group.prunable


def test_channel_shuffle_is_kept_with_a_reason_and_other_branches_stay_prunable():
    g = graph_of("shuffle")
    shuffled = g.groups_of("conv.weight", 0)
    assert shuffled and all(not gr.prunable for gr in shuffled)
    assert all("splits a channel dim" in gr.reason for gr in shuffled)
    assert g.group_of("inner.weight", 0).prunable


def test_layernorm_over_channels_blocks_the_stream_but_not_the_mlp():
    g = graph_of("convnext_like")
    stream = g.group_of("fc2.weight", 0)
    assert not stream.prunable and "LayerNorm" in stream.reason
    assert {("norm.weight", 0, 0, 1, "out"), ("layer_scale", 0, 0, 1, "out")} <= members(stream)
    hidden = g.group_of("fc1.weight", 0)
    assert hidden.prunable and ("fc2.weight", 1, 0, 1, "in") in members(hidden)


def test_attention_dims_are_kept_but_the_mlp_hidden_dim_is_prunable():
    g = graph_of("attention")
    assert g.group_of("fc1.weight", 0).prunable
    assert not g.group_of("fc2.weight", 0).prunable
    # the attention reads the model input, whose width is fixed: its heads are a kept group
    heads = g.group_of("attn.in_proj_weight", 0)
    assert not heads.prunable and "attention 'attn'" in heads.reason


def test_unknown_op_blocks_the_channels_it_reads():
    class Cumsum(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 1)
            self.b = nn.Conv2d(4, 2, 1)

        def forward(self, x):
            return self.b(torch.cumsum(self.a(x), dim=1))

    g = build_dependency_graph(Cumsum(), torch.randn(1, 3, 4, 4))
    group = g.group_of("a.weight", 0)
    assert not group.prunable and "cumsum" in group.reason


def test_hard_coded_view_size_blocks_the_channels():
    class HardView(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.fc = nn.Linear(4 * 9, 2)

        def forward(self, x):
            return self.fc(self.conv(x).view(x.size(0), 4 * 9))

    g = build_dependency_graph(HardView(), torch.randn(1, 3, 3, 3))
    group = g.group_of("conv.weight", 0)
    assert not group.prunable and "constant" in group.reason


def test_data_dependent_control_flow_in_a_submodule_becomes_an_opaque_leaf():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            if x.sum() > 0:
                return self.conv(x)
            return x

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 1)
            self.branchy = Branchy()
            self.head = nn.Conv2d(4, 2, 1)
            self.mid = nn.Conv2d(3, 5, 1)
            self.mid2 = nn.Conv2d(5, 2, 1)

        def forward(self, x):
            return self.head(self.branchy(self.stem(x))) + self.mid2(self.mid(x))

    g = build_dependency_graph(Net(), torch.randn(1, 3, 4, 4))
    assert any("branchy" in note for note in g.notes)
    assert not g.group_of("stem.weight", 0).prunable
    assert g.group_of("mid.weight", 0).prunable


def test_data_dependent_control_flow_at_top_level_raises_graph_error_with_fix():
    class Top(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            if x.mean() > 0:
                x = -x
            return self.conv(x)

    with pytest.raises(GraphError) as info:
        build_dependency_graph(Top(), torch.randn(1, 3, 4, 4))
    assert "top-level forward" in info.value.message and info.value.hint


def test_bad_example_input_raises_graph_error():
    model, _ = build("conv_bn")
    with pytest.raises(GraphError):
        build_dependency_graph(model, "not a tensor")
    with pytest.raises(GraphError) as info:
        build_dependency_graph(model, torch.randn(1, 5, 8, 8))
    assert "input" in info.value.hint


def test_member_indices_follow_the_contract_formula():
    m = Member("t", 1, -4, 16, "in")
    assert list(m.indices(0)) == list(range(64, 80))


def test_resnet18_has_twelve_prunable_groups_like_published_dependency_graphs():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(weights=None)
    g = build_dependency_graph(model, torch.randn(1, 3, 32, 32))
    assert len(g.prunable_groups()) == 12
    residual = g.group_of("layer1.0.conv2.weight", 0)
    assert {"conv1.weight", "layer1.1.conv2.weight", "layer2.0.downsample.0.weight"} <= set(
        residual.tensors()
    )


class _StochasticDepthResidual(nn.Module):
    """ConvNeXt/EfficientNet pattern: the branch goes through torchvision's StochasticDepth."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.ops import StochasticDepth

        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.branch = nn.Conv2d(8, 8, 3, padding=1)
        self.drop = StochasticDepth(0.2, "row")  # fx keeps its stochastic_depth call whole
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.drop(self.branch(x))
        return self.head(x.mean((2, 3)))


def test_stochastic_depth_passes_channels_through():
    g = build_dependency_graph(_StochasticDepthResidual(), torch.randn(1, 3, 8, 8))
    group = g.group_of("stem.weight", 0)
    assert group.prunable, group.reason
    assert {("branch.weight", 0, "out"), ("branch.weight", 1, "in"), ("head.weight", 1, "in")} <= {
        (m.tensor, m.dim, m.role) for m in group.members
    }


class _Elementwise(nn.Module):
    """Broadcasting, scalar and integer operands: the cases the meta shape shortcut must get right."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.scale = nn.Parameter(torch.ones(4, 1, 1))

    def forward(self, x):
        y = self.conv(x)
        y = y * self.scale + 1
        y = torch.add(y, y.mean(dim=(2, 3), keepdim=True))
        y = torch.nn.functional.relu(y) / 2
        n = torch.ones(y.shape[-1], dtype=torch.int64)
        return (y - torch.sigmoid(y)) * (n // 1 / 3)


def test_meta_shape_recording_matches_a_real_forward_pass():
    from prunecli.graph.trace import _record_on_meta, _ShapeRecorder, trace

    model, x = _Elementwise().eval(), torch.randn(2, 3, 9, 7)
    traced, _ = trace(model)
    real = _ShapeRecorder(traced)
    with torch.no_grad():
        real.run(x)
    assert _record_on_meta(traced, (x,)) == real.shapes
