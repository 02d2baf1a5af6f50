import math

import pytest
import torch

from prunecli.engine.metrics import METRICS
from prunecli.engine.targets import Unit, ranking_target
from prunecli.pruners.criteria import (
    group_threshold_mask,
    level_mask,
    num_structs_to_prune,
    structure_mask,
    threshold_mask,
)


def test_threshold_mask_is_strict():
    t = torch.tensor([-0.3, 0.1, 0.2, -0.05, 0.0])
    assert threshold_mask(t, 0.1).tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("level", [0.0, 0.1, 0.37, 0.5, 0.9])
def test_level_mask_prunes_exact_count(level):
    t = torch.randn(7, 11)
    mask = level_mask(t, level)
    assert int((mask == 0).sum()) == int(level * t.numel())
    # the pruned elements are the smallest in magnitude
    if level > 0:
        assert t.abs()[mask == 0].max() < t.abs()[mask == 1].min()


def test_num_structs_never_all_unless_one():
    assert num_structs_to_prune(10, 0.55) == 5
    assert num_structs_to_prune(10, 0.99) == 9
    assert num_structs_to_prune(4, 0.999) == 3
    assert num_structs_to_prune(4, 1.0) == 4
    assert num_structs_to_prune(3, 0.2) == 0


def test_filter_mask_removes_lowest_mean_l1_filters():
    t = torch.randn(10, 3, 2, 2)
    scale = torch.arange(1, 11, dtype=torch.float).view(-1, 1, 1, 1)
    t = t.sign() * scale * 0.1 + t * 0.001
    mask = structure_mask(t, "Filters", 0.35)
    removed = [f for f in range(10) if mask[f].sum() == 0]
    assert removed == [0, 1, 2]  # floor(3.5) lowest filters
    assert all(mask[f].all() for f in range(3, 10))


def test_channel_mask_on_conv_and_linear():
    conv = torch.randn(4, 6, 3, 3)
    conv[:, 2] *= 0.01
    mask = structure_mask(conv, "Channels", 0.2)  # floor(1.2) = 1 channel
    assert (mask[:, 2] == 0).all() and int((mask.sum(dim=(0, 2, 3)) == 0).sum()) == 1
    lin = torch.randn(5, 8)
    lin[:, 6] *= 0.01
    mask = structure_mask(lin, "Rows", 0.125)  # Distiller's Rows of a Linear = input features (columns)
    assert (mask[:, 6] == 0).all() and int(mask.sum()) == 5 * 7


def test_l2_ranking_can_differ_from_l1():
    t = torch.zeros(2, 1, 1, 4)
    t[0, 0, 0] = torch.tensor([1.0, 1.0, 1.0, 1.0])  # L1 4, L2 2
    t[1, 0, 0] = torch.tensor([3.5, 0.0, 0.0, 0.0])  # L1 3.5, L2 3.5
    assert structure_mask(t, "Filters", 0.5, p=1)[1].sum() == 0
    assert structure_mask(t, "Filters", 0.5, p=2)[0].sum() == 0


def test_ranked_filters_score_by_mean_l1_and_plain_l1():
    t = torch.ones(3, 2, 2, 2)
    rows = ranking_target("Filters").view(Unit("t", ("t",)), {"t": t})
    assert torch.equal(METRICS.get("mean_l1")().reduce(rows), torch.ones(3))
    assert torch.equal(METRICS.get("l1")().reduce(rows), torch.full((3,), 8.0))


def test_blocks_mask_shape_and_count():
    t = torch.randn(4, 8, 3, 3)
    mask = structure_mask(t, "Blocks", 0.5, block_shape=[1, 8, 1, 1])
    # blocks are 8 consecutive channels of one filter at one kernel position: 4*9 blocks
    per_block = mask.view(4, 8, 9).sum(dim=1)
    assert set(per_block.unique().tolist()) <= {0.0, 8.0}
    assert int((per_block == 0).sum()) == 18


def test_ranked_kernels_expand_one_value_per_kernel():
    t = torch.randn(2, 3, 2, 2)
    keep = torch.tensor([1.0, 0, 1, 1, 1, 0])
    mask = ranking_target("2D").expand(Unit("t", ("t",)), keep, {"t": t})["t"]
    assert mask[0, 1].sum() == 0 and mask[1, 2].sum() == 0 and mask.sum() == 4 * 4


def test_distiller_blocks_are_runs_of_filter_channel_pairs_at_one_kernel_position():
    """block_shape [2, 3, 1, 1] on a 2x3x1x2 tensor: the six (filter, channel) pairs form one run,
    so there are two blocks, one per kernel position, scored by their plain L1 norm."""
    t = torch.arange(12, dtype=torch.float).view(2, 3, 1, 2)
    target = ranking_target("Blocks", [2, 3, 1, 1])
    unit = Unit("t", ("t",))
    # position 0 holds 0, 2, 4, ..., 10 (sum 30); position 1 holds 1, 3, ..., 11 (sum 36)
    assert target.reduce(METRICS.get("l1")(), unit, {"t": t}).tolist() == [30.0, 36.0]
    mask = target.expand(unit, torch.tensor([0.0, 1.0]), {"t": t})["t"]
    assert torch.equal(mask[..., 0], torch.zeros(2, 3, 1)) and torch.equal(mask[..., 1], torch.ones(2, 3, 1))


def test_group_threshold_variants():
    t = torch.randn(3, 4, 2, 2)
    t[1] *= 0.001
    m = group_threshold_mask(t, "Filters", 0.01, "Max")
    assert m[1].sum() == 0 and m[0].all() and m[2].all()
    t2 = torch.randn(3, 4, 2, 2)
    t2[:, 3] *= 0.001
    m = group_threshold_mask(t2, "Channels", 0.01, "Max")
    assert m[:, 3].sum() == 0 and m[:, :3].all()
    lin = torch.randn(4, 5)
    lin[2] *= 0.0001
    m = group_threshold_mask(lin, "Rows", 0.01, "Mean_Abs")
    assert m[2].sum() == 0 and m.sum() == 15
    assert group_threshold_mask(t, "4D", 0.0, "Max") is None
    assert group_threshold_mask(t, "4D", 1e9, "Mean_Abs").sum() == 0


#: 2 filters x 3 input channels x (1 x 2) kernels, numbers chosen so Max and Mean_Abs disagree:
#: channel 0 holds one large weight among zeros (Max 0.9, Mean_Abs 0.9/4 = 0.225),
#: channel 1 is uniformly medium (Max 0.3, Mean_Abs 0.3), channel 2 is small (Max 0.1, Mean_Abs 0.05).
CHANNELS_T = torch.tensor(
    [
        [[[0.9, 0.0]], [[0.3, -0.3]], [[0.1, 0.0]]],
        [[[0.0, 0.0]], [[-0.3, 0.3]], [[0.0, 0.1]]],
    ]
)


def _channel_mask(keep: list[float]) -> torch.Tensor:
    """The expected mask written out by hand: channel c is all ones or all zeros in every filter."""
    return torch.tensor(keep).view(1, 3, 1, 1).expand(2, 3, 1, 2)


@pytest.mark.parametrize(
    ("criteria", "threshold", "keep"),
    [
        ("Max", 0.25, [1.0, 1.0, 0.0]),  # 0.9, 0.3 > 0.25 > 0.1
        ("Mean_Abs", 0.25, [0.0, 1.0, 0.0]),  # 0.225, 0.3, 0.05: the criterion changes the answer
        ("Max", 0.5, [1.0, 0.0, 0.0]),
        ("Mean_Abs", 0.2, [1.0, 1.0, 0.0]),
        ("L1", 0.5, [1.0, 1.0, 0.0]),  # sums 0.9, 1.2, 0.2 (Distiller's thresholding function names)
        ("Mean_L2", 0.2, [1.0, 0.0, 0.0]),  # L2 / 4 elements: 0.9/4, 0.6/4, sqrt(0.02)/4
    ],
)
def test_channels_threshold_honours_the_criterion(criteria: str, threshold: float, keep: list[float]) -> None:
    mask = group_threshold_mask(CHANNELS_T, "Channels", threshold, criteria)
    assert torch.equal(mask, _channel_mask(keep))


def test_structure_pruner_channels_max_vs_mean_abs() -> None:
    """The same schedule entry gives different masks under Max and Mean_Abs, as in Distiller."""
    from prunecli.compression.masker import MaskSet
    from prunecli.pruners import PRUNERS

    conv = torch.nn.Conv2d(3, 2, (1, 2), bias=False)
    with torch.no_grad():
        conv.weight.copy_(CHANNELS_T)
    for criteria, keep in (("Max", [1.0, 1.0, 0.0]), ("Mean_Abs", [0.0, 1.0, 0.0])):
        pruner = PRUNERS["StructureParameterPruner"](
            "sp", reg_regims={"weight": [0.25, "Channels"]}, threshold_criteria=criteria
        )
        maskset = MaskSet(conv)
        pruner.set_param_mask(conv.weight, "weight", maskset, None)  # meta=None: one-shot use
        assert torch.equal(maskset["weight"].mask, _channel_mask(keep)), criteria


def test_every_threshold_group_honours_the_criterion() -> None:
    """2D kernels, Rows, Cols and Filters: hand-computed Max and Mean_Abs scores."""
    k = CHANNELS_T  # kernels (f, c): Max 0.9,0.3,0.1 / 0,0.3,0.1; Mean_Abs 0.45,0.3,0.05 / 0,0.3,0.05
    m = group_threshold_mask(k, "2D", 0.2, "Max")
    assert m[:, :, 0, 0].tolist() == [[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
    m = group_threshold_mask(k, "2D", 0.35, "Mean_Abs")
    assert m[:, :, 0, 0].tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    # filters: Max 0.9 / 0.3; Mean_Abs 1.6/6 = 0.267 / 0.7/6 = 0.117
    assert group_threshold_mask(k, "Filters", 0.2, "Max")[:, 0, 0, 0].tolist() == [1.0, 1.0]
    assert group_threshold_mask(k, "Filters", 0.2, "Mean_Abs")[:, 0, 0, 0].tolist() == [1.0, 0.0]
    lin = torch.tensor([[0.8, 0.0, 0.0, 0.0], [0.3, 0.3, 0.3, 0.3]])
    # stored rows: Max 0.8 / 0.3, Mean_Abs 0.2 / 0.3; stored columns: Max 0.8,0.3,0.3,0.3, Mean 0.55,0.15,...
    assert group_threshold_mask(lin, "Rows", 0.25, "Max")[:, 0].tolist() == [1.0, 1.0]
    assert group_threshold_mask(lin, "Rows", 0.25, "Mean_Abs")[:, 0].tolist() == [0.0, 1.0]
    assert group_threshold_mask(lin, "Cols", 0.25, "Max")[0].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert group_threshold_mask(lin, "Cols", 0.25, "Mean_Abs")[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="rank"):
        group_threshold_mask(k, "Rows", 0.1, "Max")  # Distiller asserts 2-D weights for Rows


def test_group_threshold_mean_abs_formula():
    t = torch.tensor([[[[0.2, -0.2], [0.0, 0.0]]], [[[0.05, 0.05], [0.05, 0.05]]]])  # 2 filters x 1 ch
    # Mean_Abs: filter 0 -> 0.1, filter 1 -> 0.05; Max: 0.2 and 0.05
    assert group_threshold_mask(t, "Filters", 0.07, "Mean_Abs").view(2, -1)[:, 0].tolist() == [1.0, 0.0]
    assert group_threshold_mask(t, "Filters", 0.15, "Max").view(2, -1)[:, 0].tolist() == [1.0, 0.0]
    assert math.isclose(float(t.abs().mean()), 0.075, rel_tol=1e-6)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(1, 3), st.integers(1, 3)),
    level=st.floats(0.0, 1.0),
    seed=st.integers(0, 1000),
    quantize=st.booleans(),
)
def test_level_and_structure_masks_properties(shape, level, seed, quantize):
    gen = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=gen)
    if quantize:  # many ties
        t = (t * 2).round() / 2
    mask = level_mask(t, level)
    k = int(level * t.numel())
    assert int((mask == 0).sum()) >= k  # ties at the cut are pruned too (Distiller's documented quirk)
    if k and (mask == 1).any():
        assert t.abs()[mask == 0].max() <= t.abs()[mask == 1].min()
    for group, dim in (("Filters", 0), ("Channels", 1)):
        smask = structure_mask(t, group, level)
        n = t.size(dim)
        dead = int((smask.movedim(dim, 0).reshape(n, -1).sum(1) == 0).sum())
        expected = num_structs_to_prune(n, level)
        assert dead >= expected
        if level < 1.0 and expected < n:
            assert dead < n or bool((t == 0).all())
        assert set(smask.unique().tolist()) <= {0.0, 1.0}


def test_all_tied_structures_are_not_all_removed():
    t = torch.tensor([0.5, -0.5, 0.5, -0.5]).view(4, 1, 1, 1)
    mask = structure_mask(t, "Filters", 0.6)
    assert int((mask.view(4) == 0).sum()) == 2


def test_ranked_channels_l1_and_l2_keep_different_channels() -> None:
    """Distiller's ranking: length-normalised L1 (0.225, 0.3, 0.05) vs L2 (0.225, 0.15, 0.035)."""
    from prunecli.compression.masker import MaskSet
    from prunecli.pruners import PRUNERS

    conv = torch.nn.Conv2d(3, 2, (1, 2), bias=False)
    with torch.no_grad():
        conv.weight.copy_(CHANNELS_T)
    for name, keep in (
        ("L1RankedStructureParameterPruner", [0.0, 1.0, 0.0]),
        ("L2RankedStructureParameterPruner", [1.0, 0.0, 0.0]),
    ):
        pruner = PRUNERS[name]("r", group_type="Channels", desired_sparsity=0.67, weights=["weight"])
        maskset = MaskSet(conv)
        pruner.set_param_mask(conv.weight, "weight", maskset, None)  # floor(0.67 * 3) = 2 channels go
        assert torch.equal(maskset["weight"].mask, _channel_mask(keep)), name
