"""MACs of attention: projections applied functionally and the two attention products are counted."""

from __future__ import annotations

import pytest
import torch
from support.synthetic import TinyAttention, zero_channels
from torch import nn

from prunecli.engine.objectives import MacsObjective
from prunecli.graph import build_dependency_graph
from prunecli.report.compute import compute_summary, total_macs
from prunecli.thinning import thin_model


def test_multihead_attention_counts_projections_and_products_by_hand():
    attn = nn.MultiheadAttention(8, 2, batch_first=True)
    tokens = torch.randn(1, 5 + 7, 8)  # 5 query tokens, then 7 memory tokens
    rows = {r.name: r for r in compute_summary(_Call(attn), tokens)}
    # q from 5 query tokens, k and v from 7 memory tokens, each 8x8; output projection on 5 tokens;
    # q @ k^T and attn @ v: 5 x 7 x 8 each
    assert rows["attn.in_proj"].macs == (5 + 7 + 7) * 8 * 8
    assert rows["attn.out_proj"].macs == 5 * 8 * 8
    assert rows["attn.attention"].macs == 2 * 5 * 7 * 8
    assert (
        rows["attn.in_proj"].weight == "attn.in_proj_weight" and rows["attn.in_proj"].weights_volume == 3 * 64
    )
    assert total_macs(_Call(attn), tokens) == 19 * 64 + 5 * 64 + 560


class _Call(nn.Module):
    """Cross-attention of the first 5 tokens on the other 7."""

    def __init__(self, attn: nn.MultiheadAttention) -> None:
        super().__init__()
        self.attn = attn

    def forward(self, tokens):
        query, memory = tokens[:, :5], tokens[:, 5:]
        return self.attn(query, memory, memory, need_weights=False)[0]


def test_small_torchvision_vit_matches_the_hand_formula():
    from torchvision.models.vision_transformer import VisionTransformer

    model = VisionTransformer(
        image_size=8, patch_size=2, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=10
    )
    tokens, d, mlp = 4 * 4 + 1, 32, 64  # 16 patches and the class token
    per_layer = tokens * 3 * d * d + tokens * d * d + 2 * tokens * tokens * d + 2 * tokens * d * mlp
    expected = 16 * d * 3 * 2 * 2 + 2 * per_layer + d * 10
    assert total_macs(model, torch.randn(1, 3, 8, 8)) == expected == 321_984


def test_small_swin_counts_its_window_attention_on_padded_windows():
    from torchvision.models.swin_transformer import SwinTransformer

    model = SwinTransformer(
        patch_size=[2, 2], embed_dim=8, depths=[2], num_heads=[2], window_size=[3, 3], num_classes=4
    )
    rows = {r.name: r for r in compute_summary(model, torch.randn(1, 3, 8, 8))}
    attn = "features.1.0.attn"
    # a 4x4 map padded to 6x6 (whole 3x3 windows): 36 tokens, each attending to the 9 of its window
    assert rows[f"{attn}.qkv"].macs == 36 * 8 * 24
    assert rows[f"{attn}.proj"].macs == 36 * 8 * 8
    assert rows[f"{attn}.attention"].macs == 2 * 36 * 9 * 8


@pytest.mark.parametrize("narrow", [False, True])
def test_macs_objective_predicts_what_thinning_removes_from_attention(narrow):
    torch.manual_seed(0)
    model, x = TinyAttention(16, 4).eval(), torch.randn(1, 7, 5)
    objective = MacsObjective(narrow_heads=narrow)
    objective.prepare(model, x)
    dense = total_macs(model, x)
    graph = build_dependency_graph(model, x, narrow_heads=narrow)
    zero_channels(model, graph, 0.5)  # half the heads (or half of every head) and half the embedding
    params = dict(model.named_parameters())
    masks = {n: (p != 0).float() for n, p in params.items() if p.dim() > 1}
    predicted = objective.removed(masks, params)
    thin_model(model, x, graph=graph)
    assert model.attn.in_proj_weight.shape == (24, 8)  # the thinning did shrink the attention
    assert 1 - total_macs(model, x) / dense == pytest.approx(predicted)
    assert predicted > 0.5  # the products shrink too: not only the projections


NATIVE_NARROW = """version: 1
pruners:
  p:
    target: filters
    metric: l1
    objective: {kind: macs, fraction: 0.5, narrow_heads: true}
    weights: [embed.weight]
policies:
  - pruner: {instance_name: p}
    epochs: [0]
"""


def test_native_schedule_sets_narrow_heads_on_the_macs_objective():
    from prunecli.engine import build_engine_pruner
    from prunecli.schedule import load_schedule

    torch.manual_seed(0)
    model, x = TinyAttention(16, 4).eval(), torch.randn(1, 7, 5)
    entry = load_schedule("narrow.yaml", text=NATIVE_NARROW).components["pruners"]["p"]
    pruner = build_engine_pruner("p", entry.args, model, x)
    pruner.attach(model)  # prepares the objective on the dense model
    assert pruner.objective.narrow_heads is True
    dense = total_macs(model, x)
    graph = build_dependency_graph(model, x, narrow_heads=True)
    zero_channels(model, graph, 0.5)
    params = dict(model.named_parameters())
    masks = {n: (p != 0).float() for n, p in params.items() if p.dim() > 1}
    predicted = pruner.objective.removed(masks, params)
    thin_model(model, x, graph=graph)
    assert (model.attn.num_heads, model.attn.head_dim) == (4, 2)  # every head narrowed, none removed
    assert 1 - total_macs(model, x) / dense == pytest.approx(predicted)
    assert predicted > 0.5


def test_native_schedule_refuses_narrow_heads_on_the_weights_objective():
    from prunecli.errors import ScheduleError
    from prunecli.schedule import load_schedule

    text = NATIVE_NARROW.replace("kind: macs", "kind: weights")
    with pytest.raises(ScheduleError) as info:
        load_schedule("narrow.yaml", text=text)
    (problem,) = info.value.problems
    assert problem.location.line == 6 and "narrow_heads" in problem.message + problem.hint
