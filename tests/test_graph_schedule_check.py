"""Leader-group check: filters pruned on a residual path without a Leader group are reported."""

from __future__ import annotations

import os

import pytest
import torch

import prunecli.models as models
import prunecli.schedule as schedule_pkg
from prunecli.graph.schedule_check import check_schedule_dependencies

TEMPLATE = """version: 1
pruners:
  filter_pruner:
    class: L1RankedStructureParameterPruner
    group_type: {group_type}
    desired_sparsity: 0.5
{extra}    weights: [{weights}]
policies:
  - pruner:
      instance_name: filter_pruner
    epochs: [0]
"""


def _schedule(weights: str, *, leader: bool = False, group_type: str = "Filters"):
    extra = "    group_dependency: Leader\n" if leader else ""
    text = TEMPLATE.format(group_type=group_type, weights=weights, extra=extra)
    return schedule_pkg.load_schedule("schedule.yaml", text=text)


@pytest.fixture(scope="module")
def resnet20():
    model, _ = models.create_model("resnet20_cifar")
    return model, torch.randn(1, 3, 32, 32)


def test_residual_conv_without_leader_is_reported_with_the_yaml_to_write(resnet20):
    model, x = resnet20
    problems = check_schedule_dependencies(_schedule("layer1.0.conv2.weight"), model, x)
    assert len(problems) == 1
    p = problems[0]
    assert "layer1.1.conv2.weight" in p.message and "conv1.weight" in p.message
    assert "group_dependency: Leader" in p.hint and "layer1.2.conv2.weight" in p.hint
    assert p.location is not None and p.location.line is not None


def test_leader_group_covering_every_producer_is_accepted(resnet20):
    model, x = resnet20
    weights = "conv1.weight, layer1.0.conv2.weight, layer1.1.conv2.weight, layer1.2.conv2.weight"
    assert check_schedule_dependencies(_schedule(weights, leader=True), model, x) == []


def test_leader_group_missing_a_producer_names_it(resnet20):
    model, x = resnet20
    problems = check_schedule_dependencies(
        _schedule("layer1.0.conv2.weight, layer1.1.conv2.weight", leader=True), model, x
    )
    assert len(problems) == 1 and "missing" in problems[0].message
    assert "layer1.2.conv2.weight" in problems[0].message


def test_intra_block_convs_need_no_leader(resnet20):
    model, x = resnet20
    sched = _schedule("layer1.0.conv1.weight, layer2.1.conv1.weight")
    assert check_schedule_dependencies(sched, model, x) == []


def test_channels_of_a_conv_reading_the_residual_stream_are_coupled(resnet20):
    model, x = resnet20
    problems = check_schedule_dependencies(
        _schedule("layer1.1.conv1.weight", group_type="Channels"), model, x
    )
    assert problems and "input channels" in problems[0].message


def test_distiller_example_without_leader_is_flagged(examples_dir, resnet20):
    from prunecli.schedule.names import resolve_names

    model, x = resnet20
    path = os.path.join(examples_dir, "agp-pruning", "resnet20_filters.schedule_agp.yaml")
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    sched = resolve_names(schedule_pkg.load_schedule(path), shapes)
    problems = check_schedule_dependencies(sched, model, x)
    assert any("layer2.0.downsample.0.weight" in p.message for p in problems)
