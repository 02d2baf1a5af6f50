"""The native schedule syntax: validation with file:line:column, plan levels, and every refusal
of a combination that cannot work, raised before any training step."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from prunecli.cli.main import cli
from prunecli.compression import build_scheduler
from prunecli.errors import ScheduleError
from prunecli.schedule import load_schedule
from prunecli.schedule.timeline import plan


def _schedule(entry: str, policy: str = "epochs: [0]"):
    text = f"version: 1\npruners:\n  p:\n{entry}\npolicies:\n  - pruner: {{instance_name: p}}\n    {policy}\n"
    return load_schedule("native.yaml", text=text)


def _problems(entry: str) -> list:
    with pytest.raises(ScheduleError) as info:
        _schedule(entry)
    return info.value.problems


def test_unknown_kind_is_located_with_did_you_mean() -> None:
    (problem,) = _problems("    target: filtres\n    metric: l1\n    sparsity: 0.5\n    weights: [w]")
    assert (problem.location.line, problem.location.column) == (4, 13)
    assert "did you mean 'filters'" in problem.message
    assert "filters" in problem.hint


def test_unknown_option_names_the_valid_ones() -> None:
    (problem,) = _problems(
        "    target: filters\n    metric: l1\n    allocation: {kind: global, normalise: mean}\n"
        "    sparsity: 0.5\n    weights: [w]"
    )
    assert problem.location.line == 6
    assert "normalize" in problem.hint and "max_sparsity_per_layer" in problem.hint


def test_unknown_option_is_located_on_its_key_with_did_you_mean() -> None:
    (problem,) = _problems(
        "    target: {kind: block, shape: [1, 4], axse: [0, 1]}\n    metric: l1\n    sparsity: 0.5\n"
        "    weights: [w]"
    )
    assert (problem.location.line, problem.location.column) == (4, 42)
    assert "unknown option 'axse' (did you mean axes?)" in problem.message
    assert problem.hint == "target block takes shape, axes"


def test_option_of_the_wrong_type_is_refused_without_a_model() -> None:
    """The options' types come from each kind's annotated constructor: N:M with n: two, a list
    of texts for a block shape and a text for Lp's p are all refused when the file is read."""
    problems = _problems(
        "    target: {kind: 'n:m', n: two, m: 4}\n    metric: {kind: lp, p: high}\n    weights: [w]"
    )
    assert [(p.location.line, p.location.column) for p in problems] == [(4, 30), (5, 27)]
    assert "target n:m: 'n' must be an integer, got 'two'" in problems[0].message
    assert "metric lp: 'p' must be a number, got 'high'" in problems[1].message
    (problem,) = _problems(
        "    target: {kind: block, shape: [a, b]}\n    metric: l1\n    sparsity: 0.5\n    weights: [w]"
    )
    assert "'shape' must be a list of integers" in problem.message
    (problem,) = _problems("    target: {kind: block}\n    metric: l1\n    sparsity: 0.5\n    weights: [w]")
    assert "missing option shape" in problem.message


def test_schema_errors_and_missing_level() -> None:
    problems = _problems("    target: filters\n    metric: l1\n    sparsity: 1.5\n    weights: [w]")
    assert problems[0].location.line == 6 and "[0, 1)" in problems[0].message
    (problem,) = _problems("    target: filters\n    metric: l1\n    weights: [w]")
    assert "sparsity" in problem.hint


def test_misspelled_preset_is_suggested() -> None:
    (problem,) = _problems("    preset: FPGMPrunner\n    sparsity: 0.5\n    weights: [w]")
    assert "FPGMPruner" in problem.message + problem.hint


def test_plan_shows_the_native_level_per_epoch() -> None:
    schedule = _schedule(
        "    target: filters\n    metric: l1\n    schedule: {kind: linear, initial: 0.1}\n"
        "    sparsity: 0.5\n    weights: [w]",
        "starting_epoch: 0\n    ending_epoch: 5\n    frequency: 2",
    )
    targets = [e.entries[0].target for e in plan(schedule) if e.entries]
    assert targets == pytest.approx([0.1, 0.3, 0.5])


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.fc = nn.Linear(6, 4)
        self.unused = nn.Conv2d(6, 6, 1)  # no forward pass reaches it

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def _refusal(entry: str) -> tuple:
    model = _Net()
    schedule = _schedule(entry)
    with pytest.raises(ScheduleError) as info:
        build_scheduler(
            schedule,
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            example_input=torch.randn(1, 3, 8, 8),
        )
    (problem,) = info.value.problems
    return problem, model


def test_n_m_on_an_input_dimension_that_is_not_a_multiple() -> None:
    problem, _ = _refusal('    target: {kind: "n:m", n: 2, m: 4}\n    metric: l1\n    weights: [fc.weight]')
    assert "6 inputs, not a multiple of M=4" in problem.message
    assert problem.location.line == 4 and "divides 6" in problem.hint


def test_heads_on_a_layer_without_heads() -> None:
    problem, _ = _refusal("    target: heads\n    metric: l1\n    sparsity: 0.5\n    weights: [fc.weight]")
    assert "fc.weight belongs to no attention layer with heads" in problem.message
    assert problem.location.line == 4  # the target key: heads do not fit these weights
    assert "target: rows" in problem.hint


def test_activation_metric_on_a_tensor_no_forward_reaches() -> None:
    problem, _ = _refusal(
        "    target: filters\n    metric: apoz\n    sparsity: 0.5\n    weights: [conv.weight, unused.weight]"
    )
    assert "no forward pass reaches unused.weight" in problem.message
    assert problem.location.line == 5  # the metric key


def test_global_allocation_mixing_target_kinds() -> None:
    problem, _ = _refusal(
        "    target: filters\n    metric: l1\n    allocation: global\n    sparsity: 0.5\n"
        "    weights: {conv.weight: null, fc.weight: rows, unused.weight: channels}"
    )
    assert "mix" in problem.message and "allocation: uniform" in problem.hint
    assert problem.location.line == 6


def test_group_metric_on_single_weights_and_channel_metric_on_inputs() -> None:
    problem, _ = _refusal(
        "    target: element\n    metric: fpgm\n    sparsity: 0.5\n    weights: [fc.weight]"
    )
    assert "compares groups" in problem.message
    problem, _ = _refusal(
        "    target: channels\n    metric: bn_scale\n    sparsity: 0.5\n    weights: [conv.weight]"
    )
    assert "output channels" in problem.message


def test_mixed_targets_with_uniform_allocation_prune_each_their_way() -> None:
    model = _Net()
    schedule = _schedule(
        "    target: filters\n    metric: l1\n    sparsity: 0.5\n    weights: {conv.weight: null, fc.weight: rows}"
    )
    scheduler = build_scheduler(
        schedule, model, torch.optim.SGD(model.parameters(), lr=0.1), example_input=torch.randn(1, 3, 8, 8)
    )
    scheduler.on_epoch_begin(0)
    conv, fc = scheduler.masks["conv.weight"], scheduler.masks["fc.weight"]
    assert int((conv.reshape(6, -1).sum(dim=1) == 0).sum()) == 3
    assert int((fc.sum(dim=1) == 0).sum()) == 2


def test_validate_reports_a_refusal_before_training(tmp_path) -> None:
    path = tmp_path / "nm.yaml"
    path.write_text(
        "version: 1\npruners:\n  p:\n    target: {kind: 'n:m', n: 2, m: 4}\n    metric: l1\n"
        "    weights: [conv1.weight]\npolicies:\n  - pruner: {instance_name: p}\n    epochs: [0]\n"
    )
    result = CliRunner().invoke(cli, ["validate", str(path), "--model", "resnet_digits"])
    assert result.exit_code == 2
    assert f"{path}:4:13" in result.output.replace("\n", "")
    assert "Traceback" not in result.output


def test_engine_pruner_keeps_pruning_after_thinning() -> None:
    """Coupled groups are found again on the thinned model, so a later prune event still fits."""
    from prunecli.models import create_model

    torch.manual_seed(0)
    model, _ = create_model("resnet_digits")
    example = torch.randn(1, 1, 8, 8)
    text = (
        "version: 1\npruners:\n  p:\n    target: coupled\n    metric: l1\n    schedule: linear\n"
        "    sparsity: 0.5\n    weights: [conv1.weight, layer1.0.conv1.weight, layer2.0.conv1.weight]\n"
        "extensions:\n  t: {class: FilterRemover, thinning_func_str: remove_filters, arch: resnet_digits, "
        "dataset: digits}\npolicies:\n  - pruner: {instance_name: p}\n    starting_epoch: 0\n    ending_epoch: 3\n"
        "    frequency: 1\n  - extension: {instance_name: t}\n    epochs: [1]\n"
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = build_scheduler(load_schedule("t.yaml", text=text), model, optimizer, example_input=example)
    widths = []
    for epoch in range(3):
        scheduler.on_epoch_begin(epoch, optimizer)
        scheduler.on_minibatch_begin(epoch, 0, 1, optimizer)
        widths.append(model.layer1[0].conv1.weight.shape[0])
        model.eval()
        with torch.no_grad():
            assert torch.isfinite(model(example)).all()
        scheduler.on_minibatch_end(epoch, 0, 1, optimizer)
        scheduler.on_epoch_end(epoch, optimizer)
    assert widths[0] > widths[1]  # thinned at epoch 1
    mask = scheduler.masks["layer1.0.conv1.weight"]
    assert mask is not None and mask.shape[0] == widths[1]  # epoch 2 pruned the thinned tensor
    assert int((mask.reshape(mask.size(0), -1).sum(dim=1) == 0).sum()) > 0
