"""The engine's axes one at a time, on small tensors, against hand-computed values or formulas."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from support.engine import conv_bn_stack
from torch import nn

from prunecli.engine.allocation import Budget, Candidate, Global, Sensitivity, Uniform
from prunecli.engine.metrics import (
    FPGMMetric,
    L1Metric,
    L2Metric,
    LpMetric,
    MovementMetric,
    ScoreContext,
    TaylorMetric,
)
from prunecli.engine.objectives import MacsObjective, ParametersObjective
from prunecli.engine.schedules import AGP, Exponential, Linear, OneShot
from prunecli.engine.targets import (
    BlockTarget,
    ChannelTarget,
    FilterTarget,
    HeadTarget,
    KernelTarget,
    NMTarget,
    RowTarget,
    TargetError,
    Unit,
)

# ------------------------------------------------------------------------------------------ targets


def test_block_target_groups_1x4_blocks_of_a_matrix() -> None:
    w = torch.arange(16.0).reshape(2, 8)
    target, unit = BlockTarget([1, 4]), Unit("w", ("w",))
    rows = target.view(unit, {"w": w})
    assert rows.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    mask = target.expand(unit, torch.tensor([1.0, 0, 0, 1]), {"w": w})["w"]
    assert mask.tolist() == [[1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1]]


def test_block_target_4x1_and_2x2_round_trip() -> None:
    w = torch.arange(32.0).reshape(4, 8)
    unit = Unit("w", ("w",))
    column_blocks = BlockTarget([4, 1]).view(unit, {"w": w})
    assert column_blocks[1].tolist() == [1, 9, 17, 25]  # second column
    squares = BlockTarget([2, 2]).view(unit, {"w": w})
    assert squares[0].tolist() == [0, 1, 8, 9]
    keep = torch.zeros(8)
    keep[5] = 1  # block row 1, block column 1: rows 2-3, columns 2-3
    mask = BlockTarget([2, 2]).expand(unit, keep, {"w": w})["w"]
    assert mask.nonzero().tolist() == [[2, 2], [2, 3], [3, 2], [3, 3]]


def test_block_target_over_chosen_axes_and_kernels() -> None:
    w = torch.randn(4, 6, 3, 3)
    unit = Unit("w", ("w",))
    along_inputs = BlockTarget([2], axes=[1]).view(unit, {"w": w})
    assert along_inputs.shape == (4 * 3 * 3 * 3, 2)
    kernels = KernelTarget().view(unit, {"w": w})
    assert kernels.shape == (24, 9)
    assert torch.equal(kernels[7], w[1, 1].reshape(-1))


def test_block_target_refuses_a_shape_that_does_not_divide() -> None:
    with pytest.raises(TargetError, match="not a multiple of the block size 4"):
        BlockTarget([1, 4]).check(Unit("w", ("w",)), {"w": torch.zeros(2, 6)})


def test_slice_targets_pick_filters_channels_rows_columns() -> None:
    conv = torch.randn(3, 2, 2, 2)
    unit = Unit("w", ("w",))
    assert torch.equal(FilterTarget().view(unit, {"w": conv})[1], conv[1].reshape(-1))
    assert torch.equal(ChannelTarget().view(unit, {"w": conv})[1], conv[:, 1].reshape(-1))
    mask = ChannelTarget().expand(unit, torch.tensor([0.0, 1.0]), {"w": conv})["w"]
    assert mask[:, 0].abs().sum() == 0 and mask[:, 1].min() == 1
    fc = torch.randn(5, 3)
    assert torch.equal(RowTarget().view(unit, {"w": fc})[4], fc[4])
    with pytest.raises(TargetError):
        RowTarget().check(unit, {"w": conv})


def test_n_m_keeps_the_n_largest_of_every_m_along_the_input_dimension() -> None:
    torch.manual_seed(0)
    w = torch.randn(3, 8, 2, 2)
    target, unit = NMTarget(2, 4), Unit("w", ("w",))
    scores = L1Metric().score(target, unit, ScoreContext({"w": w})).reshape(w.shape)
    mask = target.expand(unit, target.select(unit, scores.reshape(-1), {"w": w}), {"w": w})["w"]
    for o, h, k in itertools.product(range(3), range(2), range(2)):
        for start in (0, 4):
            run = w[o, start : start + 4, h, k].abs()
            kept = mask[o, start : start + 4, h, k]
            assert int((kept == 0).sum()) == 2  # exactly M - N zeros in every run of M
            assert set(kept.nonzero().flatten().tolist()) == set(run.topk(2).indices.tolist())


def test_n_m_refuses_an_input_dimension_that_is_not_a_multiple() -> None:
    with pytest.raises(TargetError, match="not a multiple of M=8"):
        NMTarget(4, 8).check(Unit("w", ("w",)), {"w": torch.zeros(4, 12)})


def test_heads_of_multihead_attention_are_pruned_together() -> None:
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(embed_dim=8, num_heads=4)
    model = nn.Sequential()
    model.add_module("attn", attention)
    target = HeadTarget()
    (unit,) = target.units(["attn.in_proj_weight"], model)
    assert set(unit.tensors) == {"attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight"}
    params = dict(model.named_parameters())
    rows = target.view(unit, params)
    # per head: 2 rows of q, k and v (3 * 2 * 8 weights), their 6 biases and 2 columns of out_proj (8 * 2)
    assert rows.shape == (4, 48 + 6 + 16)
    masks = target.expand(unit, torch.tensor([1.0, 0.0, 1.0, 1.0]), params)
    in_mask = masks["attn.in_proj_weight"]
    for block in range(3):  # q, k, v
        assert in_mask[block * 8 + 2 : block * 8 + 4].abs().sum() == 0
        assert in_mask[block * 8 : block * 8 + 2].min() == 1
    assert masks["attn.out_proj.weight"][:, 2:4].abs().sum() == 0
    assert masks["attn.out_proj.weight"][:, 4:].min() == 1
    # the masked head contributes nothing: same output as zeroing its value rows by hand
    x = torch.randn(5, 1, 8)
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask)
        out, _ = attention(x, x, x)
        attention.in_proj_weight[16 + 2 : 16 + 4] = 7.0  # head 1's value rows: must not matter
        again, _ = attention(x, x, x)
    assert torch.allclose(out, again, atol=1e-6)


def test_heads_of_torchvision_vit_and_swin_blocks() -> None:
    from torchvision.models.swin_transformer import ShiftedWindowAttention
    from torchvision.models.vision_transformer import EncoderBlock

    vit = nn.Sequential()
    vit.add_module("block", EncoderBlock(4, 16, 32, 0.0, 0.0))
    (unit,) = HeadTarget().units(["block.self_attention.out_proj.weight"], vit)
    assert unit.layout.heads == 4
    swin = nn.Sequential()
    swin.add_module("attn", ShiftedWindowAttention(16, [2, 2], [0, 0], num_heads=2))
    (unit,) = HeadTarget().units(["attn.qkv.weight"], swin)
    params = dict(swin.named_parameters())
    masks = HeadTarget().expand(unit, torch.tensor([0.0, 1.0]), params)
    qkv = masks["attn.qkv.weight"]
    assert [int(qkv[i].sum() == 0) for i in range(0, 48, 8)] == [1, 0, 1, 0, 1, 0]
    assert masks["attn.proj.weight"][:, :8].abs().sum() == 0


def test_heads_refused_on_a_layer_without_heads() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(TargetError, match="no attention layer with heads"):
        HeadTarget().units(["0.weight"], model)


# ------------------------------------------------------------------------------------------ metrics


def _scores(metric, target, w):
    return metric.score(target, Unit("w", ("w",)), ScoreContext({"w": w}))


def test_norm_metrics_per_filter() -> None:
    w = torch.tensor([[[[1.0, -2.0]]], [[[3.0, 4.0]]]])  # two filters
    assert _scores(L1Metric(), FilterTarget(), w).tolist() == [3.0, 7.0]
    assert _scores(L2Metric(), FilterTarget(), w).tolist() == pytest.approx([math.sqrt(5), 5.0])
    assert _scores(LpMetric(3), FilterTarget(), w).tolist() == pytest.approx([9 ** (1 / 3), 91 ** (1 / 3)])


def test_fpgm_is_the_sum_of_distances_to_the_other_filters() -> None:
    torch.manual_seed(1)
    w = torch.randn(5, 2, 3, 3)
    flat = w.reshape(5, -1)
    expected = [sum(float((flat[i] - flat[j]).norm()) for j in range(5)) for i in range(5)]
    assert _scores(FPGMMetric(), FilterTarget(), w).tolist() == pytest.approx(expected, rel=1e-5)


def test_taylor_and_movement_accumulate_over_steps() -> None:
    w = torch.nn.Parameter(torch.tensor([[1.0, -2.0], [0.5, 3.0]]))
    grads = [torch.tensor([[0.1, 0.2], [-1.0, 0.0]]), torch.tensor([[-0.3, 0.1], [1.0, 0.5]])]
    taylor, movement = TaylorMetric(), MovementMetric()
    for metric in (taylor, movement):
        metric.attach(None, ["w"])
    for g in grads:
        w.grad = g
        taylor.observe({"w": w})
        movement.observe({"w": w})
    # rows (Linear outputs): |w*g| summed over steps then over the row
    expected_taylor = [sum(abs(float(w[r, c] * g[r, c])) for g in grads for c in range(2)) for r in range(2)]
    expected_movement = [-sum(float(w[r, c] * g[r, c]) for g in grads for c in range(2)) for r in range(2)]
    assert _scores(taylor, RowTarget(), w.detach()).tolist() == pytest.approx(expected_taylor)
    assert _scores(movement, RowTarget(), w.detach()).tolist() == pytest.approx(expected_movement)


# --------------------------------------------------------------------------------------- allocation


def _candidate(name: str, scores: list[float], elementwise: bool = False) -> Candidate:
    s = torch.tensor(scores)
    return Candidate(Unit(name, (name,)), s, torch.ones(len(scores)), elementwise)


def test_uniform_removes_floor_of_the_fraction_lowest_first() -> None:
    keep = Uniform().allocate([_candidate("a", [5, 1, 4, 2, 3])], Budget(0.5, 0.5, 5))[0]
    assert keep.tolist() == [1, 0, 1, 0, 1]  # floor(0.5 * 5) = 2 lowest


def test_uniform_elements_follow_the_level_rule_with_ties() -> None:
    keep = Uniform().allocate([_candidate("a", [1, 1, 2, 3], elementwise=True)], Budget(0.25, 0.25, 4))[0]
    assert keep.tolist() == [0, 0, 1, 1]  # k = 1, and the score tied with the cut goes too


def test_global_ranks_normalised_scores_across_units() -> None:
    a = _candidate("a", [1.0, 2.0, 3.0, 10.0])  # mean 4
    b = _candidate("b", [10.0, 20.0, 30.0, 40.0])  # mean 25
    keeps = Global(normalize="mean").allocate([a, b], Budget(0.5, 0.5, 8))
    # normalised: a = .25 .5 .75 2.5 ; b = .4 .8 1.2 1.6 -> the 4 lowest: a0, b0, a1, a2
    assert keeps[0].tolist() == [0, 0, 0, 1]
    assert keeps[1].tolist() == [0, 1, 1, 1]
    raw = Global(normalize="none").allocate([a, b], Budget(0.5, 0.5, 8))
    # raw scores: a0 a1 a2 a3(10) b0(10) ... -> a0, a1, a2 and then the first of the tied 10s
    assert int((raw[0] == 0).sum()) + int((raw[1] == 0).sum()) == 4
    assert raw[0][:3].sum() == 0 and raw[1][1:].min() == 1


def test_global_cap_and_never_a_whole_layer() -> None:
    a = _candidate("a", [0.1, 0.2, 0.3, 0.4])
    b = _candidate("b", [5.0, 6.0, 7.0, 8.0])
    keeps = Global(normalize="none", max_sparsity_per_layer=0.5).allocate([a, b], Budget(0.5, 0.5, 8))
    assert keeps[0].tolist() == [0, 0, 1, 1]  # capped at half of a
    assert keeps[1].tolist() == [0, 0, 1, 1]  # the rest of the budget comes from b
    keeps = Global(normalize="none").allocate([a, b], Budget(0.75, 0.75, 8))
    assert keeps[0].sum() == 1  # one group of a always stays
    assert int((keeps[1] == 0).sum()) == 3


def test_sensitivity_levels_from_the_csv_prunecli_writes(tmp_path) -> None:
    from prunecli.report.sensitivity import SensitivityPoint, write_csv

    points = [
        SensitivityPoint(name, s, top1, 1.0, 0.0)
        for name, rows in {
            "a": [(0.0, 0.90), (0.2, 0.90), (0.4, 0.895), (0.6, 0.80)],
            "b": [(0.0, 0.90), (0.2, 0.85), (0.4, 0.70)],
        }.items()
        for s, top1 in rows
    ]
    write_csv(points, tmp_path / "sensitivity.csv")
    allocation = Sensitivity(str(tmp_path / "sensitivity.csv"), max_drop=0.01)
    assert allocation.levels == {"a": 0.4, "b": 0.0}
    keeps = allocation.allocate([_candidate("a", list(range(10)))], Budget(0.5, 0.5, 10))
    assert keeps[0].tolist() == [0] * 4 + [1] * 6
    half = allocation.allocate([_candidate("a", list(range(10)))], Budget(0.25, 0.5, 10))
    assert int((half[0] == 0).sum()) == 2  # halfway through the ramp: half of 0.4


# --------------------------------------------------------------------------------------- schedules


def _meta(epoch: int, start: int = 0, end: int = 9, freq: int = 2) -> dict:
    return {"starting_epoch": start, "ending_epoch": end, "frequency": freq, "current_epoch": epoch}


@pytest.mark.parametrize("epoch", [0, 2, 4, 6, 8])
def test_schedule_formulas(epoch: int) -> None:
    t, T = epoch, 8  # pruning at 0, 2, 4, 6, 8: the last event is 8 epochs after the first
    final = 0.6
    assert OneShot().level(OneShot().progress(_meta(epoch)), final) == final
    lin = Linear(initial=0.1)
    assert lin.level(lin.progress(_meta(epoch)), final) == pytest.approx(0.1 + 0.5 * t / T)
    agp = AGP(initial=0.1)
    assert agp.level(agp.progress(_meta(epoch)), final) == pytest.approx(0.6 + (0.1 - 0.6) * (1 - t / T) ** 3)
    exp = Exponential()
    assert exp.level(exp.progress(_meta(epoch)), final) == pytest.approx(1 - (1 - final) ** (t / T))


def test_step_schedule_counts_steps() -> None:
    schedule = Linear(every_steps=5)
    meta = {**_meta(1, start=0, end=2, freq=1), "steps_per_epoch": 10, "global_step": 10}
    # 20 steps; events every 5 steps, the last at step 15
    assert schedule.progress(meta) == pytest.approx(10 / 15)


def test_agp_matches_distiller_timeline() -> None:
    from prunecli.schedule.timeline import agp_target

    for epoch in range(0, 9, 2):
        agp = AGP(initial=0.05)
        assert agp.level(agp.progress(_meta(epoch)), 0.7) == pytest.approx(
            agp_target(0.05, 0.7, epoch, 0, 9, 2)
        )


# --------------------------------------------------------------------------------------- objectives


def _tiny() -> nn.Module:
    return conv_bn_stack(16)


def test_macs_and_parameters_objectives_match_the_thinned_model() -> None:
    """What the objective says a mask removes is what thinning really removes (report's MAC count)."""
    from prunecli.report.compute import total_macs
    from prunecli.thinning import thin_model

    model, example = _tiny(), torch.randn(1, 3, 8, 8)
    params = dict(model.named_parameters())
    masks = {
        "0.weight": FilterTarget().expand(Unit("0.weight", ("0.weight",)), torch.tensor([1.0, 0, 1, 1, 0, 1, 1, 1]), params)["0.weight"],
        "3.weight": FilterTarget().expand(Unit("3.weight", ("3.weight",)), (torch.arange(16) % 4 != 0).float(), params)["3.weight"],
    }  # fmt: skip
    macs, parameters = MacsObjective(), ParametersObjective()
    macs.prepare(model, example)
    parameters.prepare(model, example)
    predicted_macs = macs.removed(masks, params)
    predicted_params = parameters.removed(masks, params)
    dense_macs = total_macs(model, example)
    dense_weights = sum(p.numel() for n, p in params.items() if p.dim() > 1)
    total = sum(p.numel() for p in params.values())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask)
    thin_model(model, example, masks=dict(masks), rule="distiller")  # zero filters go with their BN shift
    assert 1 - total_macs(model, example) / dense_macs == pytest.approx(predicted_macs)
    thinned_weights = sum(p.numel() for p in model.parameters() if p.dim() > 1)
    assert (dense_weights - thinned_weights) / total == pytest.approx(predicted_params)


class _Residual(nn.Module):
    """stem -> (a -> b) + stem: stem and b share one channel space through the addition."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.a = nn.Conv2d(6, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 6, 3, padding=1)
        self.head = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        s = self.stem(x)
        return self.head(torch.relu(self.b(torch.relu(self.a(s))) + s))


def test_coupled_target_ranks_and_masks_a_residual_group_together() -> None:
    from prunecli.engine.targets import CoupledTarget

    torch.manual_seed(0)
    model, example = _Residual(), torch.randn(1, 3, 8, 8)
    target = CoupledTarget(example_input=example)
    units = target.units(["stem.weight", "b.weight", "a.weight"], model)
    coupled = next(u for u in units if "stem.weight" in u.tensors)
    assert set(coupled.tensors) == {"stem.weight", "b.weight"}
    params = dict(model.named_parameters())
    rows = target.view(coupled, params)
    assert rows.shape == (6, 27 + 36)  # channel c: stem's filter c and b's filter c
    scores = L1Metric().score(target, coupled, ScoreContext(params))
    expected = params["stem.weight"].detach().abs().sum(dim=(1, 2, 3)) + params[
        "b.weight"
    ].detach().abs().sum(dim=(1, 2, 3))
    assert scores.tolist() == pytest.approx(expected.tolist(), rel=1e-5)
    masks = target.expand(coupled, torch.tensor([1.0, 0, 1, 1, 0, 1]), params)
    for name in ("stem.weight", "b.weight"):
        assert _pruned(masks[name]) == {1, 4}


def test_fpgm_on_a_coupled_group_adds_each_layers_distance_sums() -> None:
    """FPGM within each layer (He et al.), added over the group's layers (NNI and Torch-Pruning
    average a dependency group's layers: the same order), not distances between joined filters."""
    from prunecli.engine.metrics import FPGMMetric
    from prunecli.engine.targets import CoupledTarget

    torch.manual_seed(0)
    model, example = _Residual(), torch.randn(1, 3, 8, 8)
    target = CoupledTarget(example_input=example)
    coupled = next(u for u in target.units(["stem.weight", "b.weight"], model) if "b.weight" in u.tensors)
    params = dict(model.named_parameters())
    expected = torch.zeros(6)
    for name in ("stem.weight", "b.weight"):
        filters = params[name].detach().reshape(6, -1)
        expected += torch.tensor(
            [sum(float((filters[i] - filters[j]).norm()) for j in range(6)) for i in range(6)]
        )
    scores = FPGMMetric().score(target, coupled, ScoreContext(params))
    assert scores.tolist() == pytest.approx(expected.tolist(), rel=1e-5)
    joint = FPGMMetric().reduce(target.view(coupled, params).detach())
    assert not torch.allclose(scores, joint)  # the joined filters' distances are another number


def _pruned(mask: torch.Tensor) -> set[int]:
    return set((mask.reshape(mask.size(0), -1).sum(dim=1) == 0).nonzero().flatten().tolist())
