"""Narrowing attention heads: every head loses the same positions, the number of heads stays."""

from __future__ import annotations

import json
import math

import pytest
import torch
from support.synthetic import TinyAttention, vit_params, zero_channels

from prunecli.checkpoint import save_checkpoint
from prunecli.graph import build_dependency_graph
from prunecli.thinning import ThinningRecipe, apply_recipe, thin_model


def test_position_j_of_every_head_is_one_unit():
    torch.manual_seed(0)
    model, x = TinyAttention(12, 3).eval(), torch.randn(2, 7, 5)
    graph = build_dependency_graph(model, x, narrow_heads=True)
    group = graph.group_of("attn.in_proj_weight", 1)
    assert group.prunable and group.size == 4  # head_dim, not the number of heads (3)
    for channel in range(4):
        rows = {i for m in group.members if m.tensor == "attn.in_proj_weight" and m.dim == 0 for i in m.indices(channel)}
        embed = {i for m in group.members if m.tensor == "embed.weight" for i in m.indices(channel)}
        heads = [h * 4 + channel for h in range(3)]
        assert embed == set(heads)  # the embedding channel at that position in each head
        assert rows == {part * 12 + i for part in range(3) for i in heads}  # ... and its q, k and v rows


def _zeroed_narrow(seed: int = 0):
    torch.manual_seed(seed)
    model, x = TinyAttention(16, 4).eval(), torch.randn(3, 7, 5)
    with torch.no_grad():
        model.attn.in_proj_weight[:32] *= 4  # sharper attention: the scores' scale matters
    graph = build_dependency_graph(model, x, narrow_heads=True)
    zero_channels(model, graph, 0.5)  # 2 of the 4 positions of every head
    return model, x, graph


def test_narrowing_is_exact_because_the_queries_are_rescaled():
    model, x, graph = _zeroed_narrow()
    with torch.no_grad():
        masked = model(x)
    recipe = thin_model(model, x, graph=graph)
    attn = model.attn
    assert (attn.num_heads, attn.head_dim, attn.embed_dim, attn.kdim, attn.vdim) == (4, 2, 8, 8, 8)
    assert attn.in_proj_weight.shape == (24, 8) and attn.out_proj.weight.shape == (8, 8)
    assert recipe.checks[-1]["status"] == "verified"
    factor = math.sqrt(2 / 4)  # softmax(q . k / sqrt(head_dim)): head_dim went from 4 to 2
    assert recipe.scales == {
        "attn.in_proj_weight": [(0, 3, 0, factor)],
        "attn.in_proj_bias": [(0, 3, 0, factor)],
    }
    with torch.no_grad():
        torch.testing.assert_close(model(x), masked, rtol=0, atol=1e-6)
        # the rescaling is what keeps it exact: without it the scores are sharper and the output moves
        attn.in_proj_weight[:8] /= factor
        attn.in_proj_bias[:8] /= factor
        assert (model(x) - masked).abs().max() > 1e-3  # 1000x the tolerance above


def test_whole_heads_and_narrowed_heads_remove_the_same_width_differently():
    torch.manual_seed(0)
    model, x = TinyAttention(16, 4).eval(), torch.randn(3, 7, 5)
    whole = build_dependency_graph(model, x).group_of("attn.in_proj_weight", 1)
    assert whole.size == 4 and {m.block for m in whole.members} == {4}  # a unit is a head of 4 channels


def test_scales_survive_plain_data_and_compose():
    recipe = ThinningRecipe(tensors={"a.w": [(0, [0, 1])]}, scales={"a.w": [(0, 3, 0, 0.5)]})
    again = ThinningRecipe.from_dict(recipe.to_dict())
    assert again.scales == recipe.scales
    later = ThinningRecipe(tensors={"a.w": [(0, [1])]}, scales={"a.w": [(0, 3, 0, 0.25)]})
    both = again.then(later)
    assert both.scales == {"a.w": [(0, 3, 0, 0.5), (0, 3, 0, 0.25)]} and both.tensors["a.w"] == [(0, [1])]
    assert again.under("net").scales == {"net.a.w": [(0, 3, 0, 0.5)]}


def _small_vit():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.vision_transformer.VisionTransformer(
        image_size=16, patch_size=4, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=5
    )
    with torch.no_grad():
        model.heads.head.weight.normal_()  # torchvision zero-initialises it: make the output informative
    return model.eval(), torch.randn(1, 3, 16, 16)


def test_vit_keeps_its_heads_narrower_runs_and_reloads_from_plain_data(tmp_path):
    model, x = _small_vit()
    graph = build_dependency_graph(model, x, prune_normalized=True, narrow_heads=True)
    zero_channels(model, graph, 0.5)
    recipe = thin_model(model, x, graph=graph)
    assert recipe.checks[-1]["status"] == "deviation"  # the LayerNorm statistics changed
    assert sum(p.numel() for p in model.parameters()) == vit_params(16, 32)
    for layer in model.encoder.layers:
        attn = layer.self_attention
        assert (attn.num_heads, attn.head_dim, attn.embed_dim, layer.num_heads) == (4, 4, 16, 4)
    assert model.hidden_dim == 16 and model(torch.randn(2, 3, 16, 16)).shape == (2, 5)
    path = tmp_path / "vit.pt"
    save_checkpoint(path, {"state_dict": model.state_dict(), "recipe": recipe.to_dict()})
    data = torch.load(path, weights_only=True)
    fresh, _ = _small_vit()
    apply_recipe(fresh, data["recipe"])
    fresh.load_state_dict(data["state_dict"])
    assert fresh.encoder.layers[1].self_attention.head_dim == 4
    torch.testing.assert_close(fresh(x), model(x))


def test_small_swin_keeps_its_heads_and_bias_tables_when_narrowed():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.swin_transformer.SwinTransformer(
        patch_size=[2, 2], embed_dim=16, depths=[1, 1], num_heads=[2, 4], window_size=[2, 2], num_classes=5
    ).eval()
    x = torch.randn(1, 3, 8, 8)
    graph = build_dependency_graph(model, x, prune_normalized=True, narrow_heads=True)
    zero_channels(model, graph, 0.5)
    recipe = thin_model(model, x, graph=graph)
    first, second = model.features[1][0].attn, model.features[3][0].attn
    assert (first.num_heads, first.qkv.in_features, first.qkv.out_features) == (2, 8, 24)
    assert first.relative_position_bias_table.shape == (9, 2)  # per head: untouched
    assert (second.num_heads, second.qkv.in_features) == (4, 16)
    assert "features.1.0.attn.qkv.weight" in recipe.scales
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 5)


EMBEDDING_SCHEDULE = """\
version: 1
pruners:
  embedding:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.25
    prune_normalized: true
    weights: [conv_proj.weight]
policies:
  - pruner: {instance_name: embedding}
    epochs: [0]
"""


def test_a_schedule_built_with_narrow_heads_masks_and_thins_positions_of_every_head():
    from prunecli.compression import build_compression
    from prunecli.schedule import load_schedule

    model, x = _small_vit()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = load_schedule("schedule.yaml", text=EMBEDDING_SCHEDULE)
    scheduler = build_compression(schedule, model, opt, example_input=x, narrow_heads=True)
    scheduler.on_epoch_begin(0)
    scheduler.on_minibatch_begin(0, 0, 1, opt)
    zero_rows = (scheduler.masks["conv_proj.weight"].flatten(1) == 0).all(1)
    # a quarter of the embedding: 2 of the 8 positions of each of the 4 heads, the same in every head
    assert int(zero_rows.sum()) == 8
    assert torch.equal(zero_rows.view(4, 8), zero_rows.view(4, 8)[:1].expand(4, 8))
    thin_model(model, x, masks=scheduler.masks, prune_normalized=True, narrow_heads=True)
    attn = model.encoder.layers[0].self_attention
    assert (attn.num_heads, attn.head_dim, model.hidden_dim) == (4, 6, 24)


VIT_FACTORY = """\
from torchvision.models.vision_transformer import VisionTransformer


def small_vit():
    return VisionTransformer(image_size=8, patch_size=2, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=8)
"""


def test_deps_groups_positions_of_every_head_with_narrow_heads(tmp_path):
    pytest.importorskip("torchvision")
    from click.testing import CliRunner

    from prunecli.cli.main import cli

    factory = tmp_path / "small_vit.py"
    factory.write_text(VIT_FACTORY)
    sizes = {}
    for extra in ([], ["--narrow-heads"]):
        args = ["deps", f"{factory}:small_vit", "--input-shape", "1,3,8,8", "--prune-normalized", "--json"]
        result = CliRunner().invoke(cli, args + extra)
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        qkv = "encoder.layers.encoder_layer_0.self_attention.in_proj_weight"
        (group,) = [g for g in doc["groups"] if any(m["tensor"] == qkv and m["dim"] == 1 for m in g["members"])]
        sizes[bool(extra)] = group["size"]
        assert doc["narrow_heads"] is bool(extra)
    assert sizes == {False: 2, True: 8}  # 2 whole heads, or 8 positions of every head
