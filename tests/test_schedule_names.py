"""Matching schedule names against real parameter names."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from prunecli.cli.main import cli
from prunecli.errors import ScheduleError
from prunecli.schedule import load_schedule
from prunecli.schedule.names import normalise, resolve_names

SHAPES = {
    "features.0.weight": (64, 3, 11, 11),
    "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5),
    "classifier.1.weight": (4096, 9216),
    "classifier.1.bias": (4096,),
    "bn.weight": (64,),
}


def _load(body: str):
    return load_schedule("n.yaml", text=body)


def test_normalise_drops_dataparallel_segments() -> None:
    assert normalise("module.layer1.0.conv1.weight") == "layer1.0.conv1.weight"
    assert normalise("features.module.0.weight") == "features.0.weight"
    assert normalise("backbone.body.conv1.weight") == "backbone.body.conv1.weight"


def test_prefixes_regex_and_all_prunable_expand() -> None:
    schedule = _load(
        "pruners:\n"
        "  a: {class: AutomatedGradualPruner, initial_sparsity: 0.1, final_sparsity: 0.5,\n"
        "      weights: [features.module.0.weight, module.classifier.1.weight, features.0.weight]}\n"
        "  b: {class: AutomatedGradualPruner, initial_sparsity: 0.1, final_sparsity: 0.5, weights: __ALL_PRUNABLE__}\n"
        "  c: {class: SensitivityPruner, sensitivities: {'re:features\\.\\d+\\.weight': 0.5, features.3.weight: 0.9, '*': 0.1}}\n"
        "policies:\n  - pruner: {instance_name: c}\n    epochs: [0]\n"
    )
    resolved = resolve_names(schedule, SHAPES)
    pruners = resolved.components["pruners"]
    assert pruners["a"].args["weights"] == ["features.0.weight", "classifier.1.weight"]
    assert pruners["b"].args["weights"] == ["features.0.weight", "features.3.weight", "classifier.1.weight"]
    # the explicit entry wins over the pattern; '*' stays a wildcard
    assert pruners["c"].args["sensitivities"] == {
        "features.0.weight": 0.5,
        "features.3.weight": 0.9,
        "*": 0.1,
    }
    # the original schedule is untouched
    assert schedule.components["pruners"]["a"].args["weights"][0] == "features.module.0.weight"


def test_unmatched_names_are_all_reported_with_closest() -> None:
    schedule = _load(
        "regularizers:\n"
        "  r:\n"
        "    class: L1Regularizer\n"
        "    reg_regims:\n"
        "      module.featuers.0.weight: 0.1\n"
        "      bn.wieght: 0.2\n"
        "policies: []\n"
    )
    with pytest.raises(ScheduleError) as info:
        resolve_names(schedule, SHAPES)
    problems = info.value.problems
    assert [p.location.line for p in problems] == [5, 6]
    assert "closest: features.0.weight" in problems[0].hint
    assert "bn.weight" in problems[1].hint


def test_channels_allowed_on_linear_rows_not_on_conv() -> None:
    ok = _load(
        "pruners:\n  p: {class: L1RankedStructureParameterPruner, group_type: Channels, desired_sparsity: 0.5,"
        " weights: [classifier.1.weight, features.3.weight]}\npolicies: []\n"
    )
    resolve_names(ok, SHAPES)
    bad = _load(
        "pruners:\n  p: {class: L1RankedStructureParameterPruner, group_type: Rows, desired_sparsity: 0.5,"
        " weights: [features.3.weight]}\npolicies: []\n"
    )
    with pytest.raises(ScheduleError, match="needs a 2-D tensor"):
        resolve_names(bad, SHAPES)


def test_policy_levels_are_resolved() -> None:
    schedule = _load(
        "pruners:\n  l: {class: SparsityLevelParameterPruner, levels: {'*': 0.1}}\n"
        "policies:\n  - pruner:\n      instance_name: l\n      args: {levels: {module.features.0.weight: 0.3}}\n"
        "    epochs: [0]\n"
    )
    resolved = resolve_names(schedule, SHAPES)
    assert resolved.policies[0].args["levels"] == {"features.0.weight": 0.3}


@pytest.mark.parametrize(
    "rel",
    [
        "agp-pruning/resnet20_filters.schedule_agp.yaml",
        "agp-pruning/resnet20_filters.schedule_agp_4.yaml",
        "pruning_filters_for_efficient_convnets/resnet56_cifar_channel_rank.yaml",
        "ssl/ssl_filter-removal_training.yaml",
    ],
)
def test_real_examples_match_the_zoo(examples_dir: str, rel: str) -> None:
    model = "resnet56_cifar" if "resnet56" in rel else "resnet20_cifar"
    result = CliRunner().invoke(cli, ["validate", str(Path(examples_dir) / rel), "--model", model])
    assert result.exit_code == 0, result.output
    assert "every name matches" in " ".join(result.output.split())


def test_plan_with_model_shows_expanded_names(tmp_path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        "pruners:\n  p: {class: AutomatedGradualPruner, initial_sparsity: 0.1, final_sparsity: 0.5,"
        " weights: ['re:layer3\\.\\d\\.conv1\\.weight']}\n"
        "policies:\n  - pruner: {instance_name: p}\n    starting_epoch: 0\n    ending_epoch: 4\n    frequency: 1\n"
    )
    import json

    result = CliRunner().invoke(cli, ["plan", str(f), "--model", "resnet20_cifar", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["instances"]["pruners.p"] == [f"layer3.{i}.conv1.weight" for i in range(3)]
    assert doc["plan"][0]["entries"][0]["weights"] == doc["instances"]["pruners.p"]


def test_leader_group_matching_nothing_is_reported_not_crashed() -> None:
    schedule = _load(
        "pruners:\n  p: {class: L1RankedStructureParameterPruner, group_type: Filters, group_dependency: Leader,"
        " desired_sparsity: 0.5, weights: [module.layer3.0.conv2.weight, module.layer3.1.conv2.weight]}\n"
        "policies: []\n"
    )
    with pytest.raises(ScheduleError, match="layer3.0.conv2.weight"):
        resolve_names(schedule, SHAPES)


def _expanded(model: str, group_type: str, klass: str = "L1RankedStructureParameterPruner") -> list[str]:
    import torch

    from prunecli.models import create_model

    with torch.device("meta"):
        net, _ = create_model(model)
    shapes = {name: tuple(p.shape) for name, p in net.named_parameters()}
    schedule = _load(
        f"pruners:\n  p: {{class: {klass}, group_type: {group_type}, desired_sparsity: 0.5,"
        " weights: __ALL_PRUNABLE__}\npolicies:\n  - pruner: {instance_name: p}\n    epochs: [0]\n"
    )
    return resolve_names(schedule, shapes).components["pruners"]["p"].args["weights"]


def test_all_prunable_with_filters_means_every_convolution() -> None:
    """'Prune half the filters of every layer' of a torchvision model: its 20 convolutions, not fc."""
    names = _expanded("torchvision:resnet18", "Filters")
    assert len(names) == 20 and all(n.endswith("weight") and "fc" not in n for n in names)
    assert names[0] == "conv1.weight" and "layer4.0.downsample.0.weight" in names


def test_all_prunable_filters_prunes_half_of_every_convolution() -> None:
    """The scheduler builds (the classifier's 2-D weight used to stop it) and masks every conv."""
    import torch

    from prunecli.compression import build_scheduler
    from prunecli.models import create_model

    torch.manual_seed(0)
    net, _ = create_model("torchvision:resnet18")
    schedule = _load(
        "pruners:\n  p: {class: L1RankedStructureParameterPruner, group_type: Filters, desired_sparsity: 0.5,"
        " weights: __ALL_PRUNABLE__}\npolicies:\n  - pruner: {instance_name: p}\n    epochs: [0]\n"
    )
    shapes = {name: tuple(p.shape) for name, p in net.named_parameters()}
    scheduler = build_scheduler(
        resolve_names(schedule, shapes), net, torch.optim.SGD(net.parameters(), lr=0.1)
    )
    scheduler.on_epoch_begin(0)
    masked = {name: mask for name, mask in scheduler.masks.items() if mask is not None}
    assert len(masked) == 20 and "fc.weight" not in masked
    for name, mask in masked.items():
        zero_filters = int((mask.flatten(1).sum(1) == 0).sum())
        assert zero_filters == mask.shape[0] // 2, name  # floor(0.5 * filters)


def test_all_prunable_with_channels_skips_the_image_channels() -> None:
    names = _expanded("torchvision:resnet18", "Channels")
    assert len(names) == 19 and "conv1.weight" not in names and "fc.weight" not in names


def test_all_prunable_with_rows_means_hidden_linear_layers_only() -> None:
    """vgg11's classifier has three Linear layers; the last one's rows are the 1000 classes."""
    assert _expanded("torchvision:vgg11", "Rows") == ["classifier.0.weight", "classifier.3.weight"]


def test_all_prunable_follows_the_group_type_of_reg_regims() -> None:
    schedule = _load(
        "regularizers:\n  r:\n    class: GroupLassoRegularizer\n"
        "    reg_regims: {__ALL_PRUNABLE__: [0.1, Filters]}\n"
        "policies:\n  - regularizer: {instance_name: r}\n    epochs: [0]\n"
    )
    resolved = resolve_names(schedule, SHAPES).components["regularizers"]["r"].args["reg_regims"]
    assert list(resolved) == ["features.0.weight", "features.3.weight"]  # Filters: convolutions only
