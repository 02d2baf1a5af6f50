"""Channels normalised by LayerNorm/GroupNorm pruned on request, attention heads with the embedding."""

from __future__ import annotations

import json

import pytest
import torch
from support.patterns import build
from support.synthetic import TinyAttention, exercise, vit_params, zero_channels
from torch import nn

from prunecli.checkpoint import save_checkpoint
from prunecli.errors import GraphError
from prunecli.graph import build_dependency_graph
from prunecli.thinning import apply_recipe, thin_model


def _norm_group(graph):
    return next(g for g in graph.groups if any(m.tensor == "norm.weight" for m in g.members))


def test_layernorm_channels_are_kept_by_default_and_prunable_on_request():
    model, x = build("convnext_like")
    exact = _norm_group(build_dependency_graph(model, x))
    assert not exact.prunable and "LayerNorm" in exact.reason
    group = _norm_group(build_dependency_graph(model, x, prune_normalized=True))
    assert group.prunable and "LayerNorm 'norm'" in group.normalized
    tensors = {(m.tensor, m.dim, m.role) for m in group.members}
    assert {("stem.weight", 0, "out"), ("norm.weight", 0, "out"), ("norm.bias", 0, "out")} <= tensors
    assert {("fc1.weight", 1, "in"), ("fc2.weight", 0, "out"), ("layer_scale", 0, "out")} <= tensors
    assert ("head.weight", 1, "in") in tensors


def test_convnext_like_thinning_reports_the_deviation_instead_of_equality():
    model, x = build("convnext_like")
    graph = build_dependency_graph(model, x, prune_normalized=True)
    with torch.no_grad():
        for m in _norm_group(graph).producers():  # channels 1 and 6 of the stream: every producer
            t = dict(model.named_parameters())[m.tensor]
            t.index_fill_(m.dim, torch.tensor([1, 6]), 0.0)
    recipe = thin_model(model, x, graph=graph)
    assert model.norm.normalized_shape == (6,) and model.norm.weight.shape == (6,)
    assert model.stem.out_channels == 6 and model.dw.groups == 6 and model.layer_scale.shape == (6, 1, 1)
    assert model.fc1.in_features == 6 and model.head.in_features == 6
    check = recipe.checks[-1]
    assert check["status"] == "deviation"
    features = next(c for c in check["comparisons"] if c["name"] == "features")
    # the deviation is LayerNorm's statistics over 6 instead of 8 channels: small, but not float noise
    assert 1e-4 < features["relative_error"] < 1.0
    assert "relative error" in check["summary"]


def test_without_the_option_the_same_zeros_are_kept_exactly():
    model, x = build("convnext_like")
    graph = build_dependency_graph(model, x, prune_normalized=True)
    with torch.no_grad():
        for m in _norm_group(graph).producers():
            dict(model.named_parameters())[m.tensor].index_fill_(m.dim, torch.tensor([1, 6]), 0.0)
    recipe = thin_model(model, x)
    assert recipe.is_empty() and model.norm.weight.shape == (8,)


def test_attention_heads_go_whole_and_exactly():
    torch.manual_seed(0)
    model, x = TinyAttention().eval(), torch.randn(2, 7, 5)
    graph = build_dependency_graph(model, x)
    group = graph.group_of("attn.in_proj_weight", 1)
    assert group.prunable and group.size == 3 and group.normalized is None
    blocks = {(m.tensor, m.dim, m.offset, m.block) for m in group.members}
    # a head is head_dim = 4 contiguous channels in the embedding and in each of q, k, v
    assert {
        ("attn.in_proj_weight", 0, 0, 4),
        ("attn.in_proj_weight", 0, -3, 4),
        ("attn.in_proj_weight", 0, -6, 4),
    } <= blocks
    assert {
        ("attn.out_proj.weight", 1, 0, 4),
        ("attn.out_proj.weight", 0, 0, 4),
        ("embed.weight", 0, 0, 4),
    } <= blocks
    result = exercise(model, x, 0.34)
    assert result["removed_channels"] == 1 and result["verification"]["status"] == "verified"
    attn = model.attn
    assert (attn.num_heads, attn.embed_dim, attn.head_dim, attn.kdim, attn.vdim) == (2, 8, 4, 8, 8)
    assert attn.in_proj_weight.shape == (24, 8) and attn.out_proj.weight.shape == (8, 8)


def _small_vit():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.vision_transformer.VisionTransformer(
        image_size=16, patch_size=4, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=5
    )
    return model.eval(), torch.randn(1, 3, 16, 16)


def test_vit_thinned_to_fewer_heads_and_a_narrower_embedding_runs_and_reloads(tmp_path):
    model, x = _small_vit()
    result = exercise(model, x, 0.5, prune_normalized=True)
    assert result["params_before"] == vit_params(32, 64)
    assert result["params_after"] == vit_params(16, 32)  # half the heads, half of every MLP
    layer = model.encoder.layers[0]
    assert model.hidden_dim == 16 and layer.num_heads == 2
    assert (
        layer.self_attention.num_heads,
        layer.self_attention.embed_dim,
        layer.self_attention.head_dim,
    ) == (2, 16, 8)
    check = result["verification"]
    assert check["status"] == "deviation" and check["basis"] == "features"  # the zero head: features carry it
    assert model(torch.randn(3, 3, 16, 16)).shape == (3, 5)
    # compact checkpoint: plain data only; the recipe replays on a freshly built dense model
    path = tmp_path / "vit.compact.pt"
    recipe = thin_model(model, x)  # nothing left to remove: an empty recipe
    assert recipe.is_empty()
    dense, _ = _small_vit()
    thinned_recipe = _recipe_of(dense, x)
    save_checkpoint(path, {"state_dict": dense.state_dict(), "recipe": thinned_recipe.to_dict()})
    data = torch.load(path, weights_only=True)
    fresh, _ = _small_vit()
    apply_recipe(fresh, data["recipe"])
    fresh.load_state_dict(data["state_dict"])
    assert fresh.hidden_dim == 16 and fresh.encoder.layers[1].self_attention.num_heads == 2
    torch.testing.assert_close(fresh(x), dense(x))


def _recipe_of(model, x):
    graph = build_dependency_graph(model, x, prune_normalized=True)
    zero_channels(model, graph, 0.5)
    with torch.no_grad():
        model.heads.head.weight.normal_()  # a non-zero head, so the reloaded output is compared for real
    return thin_model(model, x, graph=graph)


class HandWrittenNorm(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(c))

    def forward(self, x):
        return (x - x.mean(-1, keepdim=True)) * self.scale


class NormOverSeveralDims(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.norm = nn.LayerNorm((4, 5, 5))
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.norm(self.conv(x)).mean((2, 3)))


class CustomNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.norm = HandWrittenNorm(4)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(self.norm(self.fc1(x)))


@pytest.mark.parametrize(
    "model,shape,words",
    [
        (CustomNormNet(), (2, 3), ["'norm'", "custom norm module"]),
        (NormOverSeveralDims(), (1, 3, 5, 5), ["'norm'", "several dims", "(4, 5, 5)"]),
    ],
)
def test_norms_that_cannot_be_sliced_are_refused_by_name(model, shape, words):
    x = torch.randn(shape)
    build_dependency_graph(model, x)  # without the option: fine, the channels are kept
    with pytest.raises(GraphError) as info:
        build_dependency_graph(model, x, prune_normalized=True)
    for word in words:
        assert word in info.value.message
    assert "prune_normalized" in info.value.hint


VIT_SCHEDULE = """\
version: 1
pruners:
  embedding:  # the patch embedding's filters, and with them every tensor of the embedding's groups
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.5
    prune_normalized: true
    weights: [conv_proj.weight]
  mlp_hidden:
    class: L1RankedStructureParameterPruner
    group_type: Channels
    desired_sparsity: 0.5
    prune_normalized: true
    weights: [encoder.layers.encoder_layer_0.mlp.3.weight, encoder.layers.encoder_layer_1.mlp.3.weight]
policies:
  - pruner: {instance_name: embedding}
    epochs: [0]
  - pruner: {instance_name: mlp_hidden}
    epochs: [0]
"""


VIT_FACTORY = """\
from torchvision.models.vision_transformer import VisionTransformer


def small_vit(num_classes=4):
    return VisionTransformer(
        image_size=8, patch_size=2, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64,
        num_classes=num_classes,
    )


small_vit.input_shape = (3, 8, 8)
"""


@pytest.mark.slow
def test_a_schedule_prunes_a_vit_to_about_a_quarter_and_the_compact_model_reloads(tmp_path):
    pytest.importorskip("torchvision")
    from prunecli.checkpoint import load_checkpoint, load_model
    from prunecli.training import run_training
    from prunecli.training.config import merge_config

    schedule = tmp_path / "vit.yaml"
    schedule.write_text(VIT_SCHEDULE)
    factory = tmp_path / "small_vit.py"
    factory.write_text(VIT_FACTORY)
    config = merge_config(
        {
            "schedule": str(schedule),
            "model": f"{factory}:small_vit",
            "dataset": "fake",
            "dataset_options": {"size": 32, "image_size": [3, 8, 8], "num_classes": 4},
            "epochs": 1, "batch_size": 16, "lr": 0.01, "max_eval_batches": 1,
            "out_dir": str(tmp_path / "run"), "device": "cpu", "quiet": True,
        }
    )  # fmt: skip
    run_training(config)
    dense_params = vit_params(32, 64, patch=2, tokens=17, classes=4)
    compact = load_model(tmp_path / "run" / "compact.pt", model=f"{factory}:small_vit?num_classes=4")
    assert sum(p.numel() for p in compact.parameters()) == vit_params(16, 32, patch=2, tokens=17, classes=4)
    assert vit_params(16, 32, patch=2, tokens=17, classes=4) / dense_params < 0.3
    assert compact.hidden_dim == 16 and compact.encoder.layers[0].self_attention.num_heads == 2
    assert compact(torch.randn(2, 3, 8, 8)).shape == (2, 4)
    checks = load_checkpoint(tmp_path / "run" / "compact.pt")["recipe"]["checks"]
    assert checks[-1]["status"] == "deviation"
    assert all(c["relative_error"] is not None for c in checks[-1]["comparisons"])
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["thinning"]["checks"][-1]["status"] == "deviation"


def test_a_schedule_asking_for_normalised_channels_of_an_unsliceable_norm_is_refused_before_training():
    from prunecli.compression import build_scheduler
    from prunecli.errors import ScheduleError
    from prunecli.schedule import load_schedule

    text = """\
version: 1
pruners:
  p:
    class: L1RankedStructureParameterPruner
    group_type: Channels
    desired_sparsity: 0.5
    prune_normalized: true
    weights: [fc2.weight]
policies:
  - pruner: {instance_name: p}
    epochs: [0]
"""
    model = CustomNormNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ScheduleError) as info:
        build_scheduler(load_schedule("s.yaml", text=text), model, opt, example_input=torch.randn(2, 3))
    assert "'norm'" in str(info.value) and "custom norm module" in str(info.value)


def test_small_swin_loses_heads_embedding_and_its_per_head_bias_tables():
    model, x = _small_swin(), torch.randn(1, 3, 8, 8)
    result = exercise(model, x, 0.5, prune_normalized=True)
    assert result["verification"]["status"] == "deviation" and result["output_mismatch"] is None
    first, second = model.features[1][0].attn, model.features[3][0].attn
    assert (first.num_heads, first.qkv.in_features, first.qkv.out_features) == (1, 8, 24)
    assert first.relative_position_bias_table.shape == (9, 1)
    assert (second.num_heads, second.qkv.in_features) == (2, 16)
    assert model.features[2].reduction.in_features == 4 * 8  # patch merging: four copies of 8 channels
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 5)


def _small_swin():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return torchvision.models.swin_transformer.SwinTransformer(
        patch_size=[2, 2], embed_dim=16, depths=[1, 1], num_heads=[2, 4], window_size=[2, 2], num_classes=5
    ).eval()


def test_thinned_swin_replays_on_a_dense_model_from_plain_data(tmp_path):
    model, x = _small_swin(), torch.randn(1, 3, 8, 8)
    graph = build_dependency_graph(model, x, prune_normalized=True)
    zero_channels(model, graph, 0.5)
    recipe = thin_model(model, x, graph=graph)
    path = tmp_path / "swin.pt"
    save_checkpoint(path, {"state_dict": model.state_dict(), "recipe": recipe.to_dict()})
    data = torch.load(path, weights_only=True)
    fresh = apply_recipe(_small_swin(), data["recipe"])
    fresh.load_state_dict(data["state_dict"])
    assert fresh.features[1][0].attn.num_heads == 1
    torch.testing.assert_close(fresh(x), model(x))


@pytest.mark.slow
@pytest.mark.parametrize("name,side", [("convnext_tiny", 64), ("swin_t", 64)])  # vit_b_16: bench 9
def test_torchvision_transformers_at_half_of_every_group_keep_about_a_quarter(name, side):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    result = exercise(model, torch.randn(1, 3, side, side), 0.5, prune_normalized=True)
    assert result["removed_channels"] == result["zeroed_channels"]
    assert result["params_after"] / result["params_before"] < 0.27  # Torch-Pruning's convnext_tiny: 0.26
    assert result["verification"]["status"] == "deviation"
    assert all(c["relative_error"] is not None for c in result["verification"]["comparisons"])


CONVNEXT_SCHEDULE = """\
version: 1
pruners:
  stages:  # the stem and downsampling convolutions: every tensor of the stage widths follows
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.5
    prune_normalized: true
    weights: [features.0.0.weight, features.2.1.weight]
  mlp_hidden:
    class: L1RankedStructureParameterPruner
    group_type: Channels
    desired_sparsity: 0.5
    prune_normalized: true
    weights: [features.1.0.block.5.weight, features.3.0.block.5.weight]
policies:
  - pruner: {instance_name: stages}
    epochs: [0]
  - pruner: {instance_name: mlp_hidden}
    epochs: [0]
"""


def test_a_schedule_prunes_a_convnext_to_about_a_quarter_of_its_parameters():
    pytest.importorskip("torchvision")
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    from prunecli.compression import build_compression

    torch.manual_seed(0)
    model = ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=5).eval()
    x = torch.randn(1, 3, 32, 32)
    before = sum(p.numel() for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = build_compression(_schedule_file(CONVNEXT_SCHEDULE), model, opt, example_input=x)
    scheduler.on_epoch_begin(0)
    scheduler.on_minibatch_begin(0, 0, 1, opt)
    recipe = thin_model(model, x, masks=scheduler.masks, prune_normalized=True)
    after = sum(p.numel() for p in model.parameters())
    assert model.features[0][0].out_channels == 8 and model.features[2][1].out_channels == 16
    assert model.features[1][0].block[3].out_features == 32  # MLP hidden halved too
    # 0.31 here (the classifier's outputs do not shrink); torchvision's convnext_tiny: 0.26 (benchmarks)
    assert 0.2 < after / before < 0.33
    assert recipe.checks[-1]["status"] == "deviation"


def _schedule_file(text: str):
    from prunecli.schedule import load_schedule

    return load_schedule("schedule.yaml", text=text)
