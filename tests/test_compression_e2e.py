"""A small CNN trained a few steps under a YAML schedule of each pruner family ends at the schedule's sparsity."""

import math
import textwrap

import pytest
import torch
from support.compression import TinyCNN, sparsity, train, zero_channels, zero_filters

from prunecli.compression import compression_scheduler_from_yaml

RANGE = "starting_epoch: 0\n    ending_epoch: 4\n    frequency: 1"


def _agp_filters(model, sched):
    return zero_filters(model.conv2.weight) == math.floor(0.5 * 16)


CASES = {
    "agp-element": (
        "class: AutomatedGradualPruner\n    initial_sparsity: 0.1\n    final_sparsity: 0.6\n    weights: [conv2.weight, fc.weight]",
        RANGE,
        lambda m, s: (
            sparsity(m.conv2.weight) == int(0.6 * 1152) / 1152
            and sparsity(m.fc.weight) == int(0.6 * 160) / 160
        ),
    ),
    "l1-filters-agp": (
        "class: L1RankedStructureParameterPruner_AGP\n    initial_sparsity: 0.1\n    final_sparsity: 0.5\n    group_type: Filters\n    weights: [conv2.weight]",
        RANGE,
        _agp_filters,
    ),
    "l2-channels-one-shot": (
        "class: L2RankedStructureParameterPruner\n    group_type: Channels\n    desired_sparsity: 0.75\n    weights: [conv2.weight]",
        "epochs: [0]",
        lambda m, s: zero_channels(m.conv2.weight) == 6,
    ),
    "level": (
        "class: SparsityLevelParameterPruner\n    levels: {conv1.weight: 0.4}",
        "epochs: [0, 2]",
        lambda m, s: sparsity(m.conv1.weight) >= int(0.4 * 216) / 216,
    ),
    "magnitude": (
        "class: MagnitudeParameterPruner\n    thresholds: {'*': 0.0, conv2.weight: 0.05}",
        "epochs: [3]",
        lambda m, s: (
            torch.equal(s.masks["conv2.weight"] == 0, m.conv2.weight == 0) and sparsity(m.conv2.weight) > 0.3
        ),
    ),
    "sensitivity": (
        "class: SensitivityPruner\n    sensitivities: {conv2.weight: 1.0}",
        RANGE,
        lambda m, s: 0.5 < sparsity(m.conv2.weight) < 0.8,
    ),
    "splicing": (
        "class: SplicingPruner\n    low_thresh_mult: 0.9\n    hi_thresh_mult: 1.1\n    sensitivity_multiplier: 0.0\n    sensitivities: {conv2.weight: 0.3}",
        RANGE,
        lambda m, s: sparsity(m.conv2.weight) > 0.3,
    ),
    "baidu": (
        "class: BaiduRNNPruner\n    q: 0.1\n    ramp_epoch_offset: 1\n    ramp_slope_mult: 2\n    weights: [fc.weight]",
        RANGE,
        lambda m, s: sparsity(m.fc.weight) > 0.1,
    ),
    "structure-threshold": (
        "class: StructureParameterPruner\n    reg_regims: {conv2.weight: [0.14, Filters]}\n    threshold_criteria: Max",
        "epochs: [0]",
        lambda m, s: 0 < zero_filters(s.masks["conv2.weight"]) == zero_filters(m.conv2.weight),
    ),
    "apoz-agp": (
        "class: ActivationAPoZRankedFilterPruner_AGP\n    initial_sparsity: 0.1\n    final_sparsity: 0.5\n    group_type: Filters\n    weights: [conv2.weight]",
        RANGE,
        lambda m, s: zero_filters(s.masks["conv2.weight"]) == 8,
    ),
    "mean-activation": (
        "class: ActivationMeanRankedFilterPruner\n    group_type: Filters\n    desired_sparsity: 0.25\n    weights: [conv2.weight]",
        "epochs: [0]",
        lambda m, s: zero_filters(m.conv2.weight) == 4,
    ),
    "gradient-agp": (
        "class: GradientRankedFilterPruner_AGP\n    initial_sparsity: 0.1\n    final_sparsity: 0.5\n    group_type: Filters\n    weights: [conv2.weight]",
        RANGE,
        lambda m, s: zero_filters(s.masks["conv2.weight"]) == 8,
    ),
    "random-level": (
        "class: RandomLevelStructureParameterPruner\n    group_type: Filters\n    sparsity_range: [0.25, 0.5]\n    weights: [conv2.weight]",
        "epochs: [0]",
        lambda m, s: 4 <= zero_filters(m.conv2.weight) <= 8,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_pruner_family_reaches_schedule_sparsity(case, tmp_path):
    body, timing, check = CASES[case]
    text = f"""
version: 1
pruners:
  the_pruner:
    {body}
lr_schedulers:
  lr:
    class: ExponentialLR
    gamma: 0.9
policies:
  - pruner:
      instance_name: the_pruner
    {timing}
  - lr_scheduler:
      instance_name: lr
    starting_epoch: 0
    ending_epoch: 4
    frequency: 1
"""
    path = tmp_path / "schedule.yaml"
    path.write_text(textwrap.dedent(text))
    torch.manual_seed(0)
    model = TinyCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    sched = compression_scheduler_from_yaml(path, model, optimizer)
    train(sched, model, optimizer, epochs=4, steps=2)
    assert check(model, sched)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * 0.9**4)
    for name, mask in sched.masks.items():
        if mask is not None and not sched.zeros_mask_dict[name].mask_on_forward_only:
            param = dict(model.named_parameters())[name]
            assert (param[mask == 0] == 0).all()


def test_group_lasso_schedule_through_yaml(tmp_path):
    path = tmp_path / "ssl.yaml"
    path.write_text(
        textwrap.dedent(
            """
            version: 1
            regularizers:
              ssl:
                class: GroupLassoRegularizer
                reg_regims:
                  module.conv2.weight: [0.002, Channels]
                threshold_criteria: Mean_Abs
            policies:
              - regularizer:
                  instance_name: ssl
                  args: {keep_mask: true}
                starting_epoch: 0
                ending_epoch: 2
                frequency: 1
            """
        )
    )
    torch.manual_seed(0)
    model = TinyCNN()
    with torch.no_grad():
        model.conv2.weight[:, 3] *= 1e-6
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-5)
    sched = compression_scheduler_from_yaml(path, model, optimizer)  # module. prefix resolved
    out = sched.before_backward_pass(0, 0, 1, torch.tensor(0.0), optimizer, return_loss_components=True)
    assert out.loss_components["GroupLassoRegularizer_loss"] > 0
    train(sched, model, optimizer, epochs=3, steps=1)
    assert zero_channels(model.conv2.weight) >= 1 and model.conv2.weight[:, 3].abs().sum() == 0
