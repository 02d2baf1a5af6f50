import math

import pytest
import torch
from support.compression import ResBlockNet, TinyCNN, make_schedule, train, zero_channels, zero_filters

from prunecli.compression import build_scheduler
from prunecli.compression.masker import MaskSet
from prunecli.pruners import PRUNERS


def _build(pruner_cls, args, timing=None, policy_args=None, model=None, seed=0):
    torch.manual_seed(seed)
    model = model or TinyCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    schedule = make_schedule(
        {"pruners": {"p": (pruner_cls, args)}}, [("pruner", "p", timing or {"epochs": [0]}, policy_args)]
    )
    return model, optimizer, build_scheduler(schedule, model, optimizer)


@pytest.mark.parametrize("cls", ["L1RankedStructureParameterPruner", "L2RankedStructureParameterPruner"])
@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.99])
def test_one_shot_filters_reach_target(cls, sparsity):
    model, opt, sched = _build(
        cls, {"group_type": "Filters", "desired_sparsity": sparsity, "weights": ["conv2.weight"]}
    )
    train(sched, model, opt, epochs=1)
    expected = min(math.floor(sparsity * 16), 15)
    assert zero_filters(model.conv2.weight) == expected


def test_one_shot_fires_once_and_mask_is_stable():
    model, opt, sched = _build(
        "L1RankedStructureParameterPruner",
        {"group_type": "Channels", "desired_sparsity": 0.5, "weights": ["conv2.weight"]},
        timing={"starting_epoch": 0, "ending_epoch": 3, "frequency": 1},
    )
    masks = []
    for epoch in range(3):
        train(sched, model, opt, epochs=epoch + 1, start_epoch=epoch)
        masks.append(sched.masks["conv2.weight"].clone())
    assert zero_channels(model.conv2.weight) == 4
    assert torch.equal(masks[0], masks[1]) and torch.equal(masks[1], masks[2])


def test_leader_group_loses_identical_indices():
    model = ResBlockNet()
    model, opt, sched = _build(
        "L1RankedStructureParameterPruner",
        {
            "group_type": "Filters",
            "desired_sparsity": 0.5,
            "weights": ["a.weight", "b.weight"],
            "group_dependency": "Leader",
        },
        model=model,
    )
    train(sched, model, opt, epochs=1)
    dead_a = model.a.weight.reshape(8, -1).abs().sum(1) == 0
    dead_b = model.b.weight.reshape(8, -1).abs().sum(1) == 0
    assert int(dead_a.sum()) == 4 and torch.equal(dead_a, dead_b)
    # the leader's own L1 ranking decided: the pruned filters are a's lowest mean-L1 filters at epoch 0
    state = sched.state_dict()["policies"]
    (policy_state,) = state.values()
    assert policy_state["pruner"]["leader_binary_map"].sum() == 4


def test_structured_agp_follows_timeline_with_leader():
    model = ResBlockNet()
    model, opt, sched = _build(
        "L1RankedStructureParameterPruner_AGP",
        {
            "initial_sparsity": 0.1,
            "final_sparsity": 0.75,
            "group_type": "Filters",
            "weights": ["a.weight", "b.weight"],
            "group_dependency": "Leader",
        },
        timing={"starting_epoch": 0, "ending_epoch": 5, "frequency": 1},
        model=model,
    )
    for epoch in range(5):
        train(sched, model, opt, epochs=epoch + 1, start_epoch=epoch, steps=1)
        target = 0.75 + (0.1 - 0.75) * (1 - epoch / 4) ** 3
        expected = min(math.floor(target * 8), 7)
        assert zero_filters(model.a.weight) == expected, epoch
        assert torch.equal(
            model.a.weight.reshape(8, -1).abs().sum(1) == 0, model.b.weight.reshape(8, -1).abs().sum(1) == 0
        )


def test_rows_on_linear_prunes_input_features():
    model, opt, sched = _build(
        "L1RankedStructureParameterPruner_AGP",
        {"initial_sparsity": 0.2, "final_sparsity": 0.5, "group_type": "Rows", "weights": ["fc.weight"]},
        timing={"starting_epoch": 0, "ending_epoch": 3, "frequency": 1},
    )
    train(sched, model, opt, epochs=3, steps=1)
    assert int((model.fc.weight.abs().sum(0) == 0).sum()) == 8  # 16 input features, 50%


def test_blocks_pruner():
    model, opt, sched = _build(
        "L1RankedStructureParameterPruner",
        {
            "group_type": "Blocks",
            "desired_sparsity": 0.5,
            "weights": ["conv2.weight"],
            "kwargs": {"block_shape": [1, 8, 1, 1]},
        },
    )
    train(sched, model, opt, epochs=1, steps=1)
    w = model.conv2.weight.reshape(16, 8, 9)
    assert int((w.abs().sum(1) == 0).sum()) == 16 * 9 // 2


def test_blocks_without_shape_is_rejected():
    with pytest.raises(ValueError, match="block_shape"):
        PRUNERS["L1RankedStructureParameterPruner"]("b", "Blocks", 0.5, ["conv2.weight"])


def test_random_level_pruner_within_range():
    model, opt, sched = _build(
        "RandomLevelStructureParameterPruner",
        {"group_type": "Filters", "sparsity_range": [0.25, 0.5], "weights": ["conv2.weight"]},
    )
    train(sched, model, opt, epochs=1, steps=1)
    assert 4 <= zero_filters(model.conv2.weight) <= 8


@pytest.mark.parametrize(
    "cls",
    [
        "RandomRankedFilterPruner",
        "GradientRankedFilterPruner",
        "ActivationAPoZRankedFilterPruner",
        "ActivationMeanRankedFilterPruner",
    ],
)
def test_filter_score_pruners_reach_target(cls):
    model, opt, sched = _build(
        cls, {"group_type": "Filters", "desired_sparsity": 0.5, "weights": ["conv2.weight"]}
    )
    train(sched, model, opt, epochs=1, steps=3)
    assert zero_filters(model.conv2.weight) == 8


@pytest.mark.parametrize(
    "cls",
    [
        "RandomRankedFilterPruner_AGP",
        "GradientRankedFilterPruner_AGP",
        "ActivationAPoZRankedFilterPruner_AGP",
    ],
)
def test_filter_score_agp(cls):
    model, opt, sched = _build(
        cls,
        {
            "initial_sparsity": 0.25,
            "final_sparsity": 0.5,
            "group_type": "Filters",
            "weights": ["conv2.weight"],
        },
        timing={"starting_epoch": 0, "ending_epoch": 3, "frequency": 1},
    )
    train(sched, model, opt, epochs=3, steps=2)
    # the last mask removes exactly the target; filters zeroed by earlier, differently ranked masks
    # stay zero only where nothing revived them (Distiller does not keep earlier choices)
    assert zero_filters(sched.masks["conv2.weight"]) == 8
    assert zero_filters(model.conv2.weight) >= 8


def test_apoz_ranks_by_relu_zeros_of_conv_output():
    model = TinyCNN()
    pruner = PRUNERS["ActivationAPoZRankedFilterPruner"]("a", "Filters", 0.25, ["conv2.weight"])
    pruner.attach(model)
    with torch.no_grad():
        model.conv2.weight[[1, 5, 9, 13]] = -model.conv2.weight[
            [1, 5, 9, 13]
        ].abs()  # mostly negative outputs
        model.conv2.weight[[1, 5, 9, 13]] -= 1.0
    x = torch.rand(4, 3, 8, 8)
    model.train()
    out = torch.relu(model.bn1(model.conv1(x)))
    model.conv2(out)
    expected = 100 * (torch.relu(model.conv2(out)) == 0).float().mean(dim=(0, 2, 3))
    maskset = MaskSet(model)
    recorded = pruner.metric.stats  # the hook's running sums
    stats = recorded.sums["conv2.weight"] / recorded.counts["conv2.weight"]
    assert torch.allclose(stats, expected, atol=1e-4)
    pruner.set_param_mask(model.conv2.weight, "conv2.weight", maskset, {"model": model})
    dead = (maskset["conv2.weight"].mask.view(16, -1).sum(1) == 0).nonzero().flatten().tolist()
    assert dead == [1, 5, 9, 13]


def test_gradient_ranker_without_statistics_waits_for_a_step():
    model = TinyCNN()
    pruner = PRUNERS["GradientRankedFilterPruner"]("g", "Filters", 0.5, ["conv2.weight"])
    maskset = MaskSet(model)
    pruner.set_param_mask(model.conv2.weight, "conv2.weight", maskset, {"model": model})
    assert pruner.pending and maskset["conv2.weight"].mask is None


def test_bernoulli_mask_is_scaled():
    torch.manual_seed(3)
    model = TinyCNN()
    pruner = PRUNERS["BernoulliFilterPruner"]("b", "Filters", 0.5, ["conv2.weight"])
    maskset = MaskSet(model)
    pruner.set_param_mask(model.conv2.weight, "conv2.weight", maskset, {"model": model})
    mask = maskset["conv2.weight"].mask
    kept = int((mask.view(16, -1).sum(1) != 0).sum())
    assert 0 < kept < 16
    assert torch.allclose(mask[mask != 0], torch.full_like(mask[mask != 0], 16 / kept))


def test_filter_score_pruners_reject_other_groups():
    with pytest.raises(ValueError):
        PRUNERS["RandomRankedFilterPruner"]("r", "Channels", 0.5, ["conv2.weight"])


def test_cols_and_kernel_ranking_extensions():
    model = TinyCNN()
    maskset = MaskSet(model)
    meta = {"model": model}
    PRUNERS["L1RankedStructureParameterPruner"]("c", "Cols", 0.5, ["fc.weight"]).set_param_mask(
        model.fc.weight, "fc.weight", maskset, meta
    )
    assert int((maskset["fc.weight"].mask.sum(1) == 0).sum()) == 5  # 10 output rows, half removed
    PRUNERS["L1RankedStructureParameterPruner"]("k", "2D", 0.25, ["conv2.weight"]).set_param_mask(
        model.conv2.weight, "conv2.weight", maskset, meta
    )
    kernels = maskset["conv2.weight"].mask.reshape(16 * 8, 9)
    assert int((kernels.sum(1) == 0).sum()) == 32 and set(kernels.sum(1).unique().tolist()) == {0.0, 9.0}


def test_leader_with_unequal_structure_counts_is_a_schedule_error():
    from prunecli.errors import ScheduleError

    schedule = make_schedule(
        {
            "pruners": {
                "p": (
                    "L1RankedStructureParameterPruner",
                    {
                        "group_type": "Filters",
                        "desired_sparsity": 0.5,
                        "weights": ["conv1.weight", "conv2.weight"],
                        "group_dependency": "Leader",
                    },
                )
            }
        },
        [("pruner", "p", {"epochs": [0]}, None)],
    )
    with pytest.raises(
        ScheduleError, match="Leader conv1.weight has 8 Filters structures but conv2.weight has 16"
    ):
        build_scheduler(schedule, TinyCNN(), None)
