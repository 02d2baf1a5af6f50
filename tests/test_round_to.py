"""Channel rounding (`round_to`): kept filter/channel counts become multiples of N, rounded up."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from prunecli.checkpoint import build_checkpoint, load_model, save_checkpoint
from prunecli.cli.main import cli
from prunecli.compression import build_scheduler
from prunecli.errors import ScheduleError, ThinningError
from prunecli.models import create_model
from prunecli.pruners import L1RankedStructureParameterPruner
from prunecli.pruners.criteria import round_prune_count
from prunecli.schedule import load_schedule
from prunecli.thinning import thin_model

# filter f of the test convolution has every weight equal to VALUES[f] (so its L1 rank is VALUES' order)
VALUES = [5, 1, 9, 3, 12, 7, 2, 10, 4, 8, 6, 11]


@pytest.mark.parametrize(
    ("n", "k", "round_to", "expected"),
    [
        (24, 12, 8, 8),  # 12 kept -> 16
        (16, 8, 8, 8),  # 8 kept: already a multiple
        (20, 15, 8, 12),  # 5 kept -> 8
        (20, 2, 8, 0),  # 18 kept -> 24 > 20: the layer keeps everything
        (64, 44, 8, 40),  # 20 kept -> 24
        (10, 0, 4, 0),  # nothing asked: nothing pruned
        (10, 7, 1, 7),  # round_to 1: unchanged
    ],
)
def test_prune_count_rounds_the_kept_count_up(n, k, round_to, expected):
    assert round_prune_count(n, k, round_to) == expected


def _conv() -> nn.Conv2d:
    conv = nn.Conv2d(3, 12, 1)
    with torch.no_grad():
        for f, v in enumerate(VALUES):
            conv.weight[f].fill_(float(v))
    return conv


def _kept(mask: torch.Tensor, dim: int = 0) -> list[int]:
    return sorted(torch.nonzero(mask.movedim(dim, 0).flatten(1).abs().sum(1)).flatten().tolist())


def test_l1_filters_keep_the_highest_ranked_extra_filters():
    model = nn.Sequential(_conv())
    pruner = L1RankedStructureParameterPruner("p", "Filters", 0.5, ["0.weight"], model=model, round_to=4)
    binary = pruner.keep("0.weight", model[0].weight, 0.5)
    # 6 of 12 kept requested -> 8: the four lowest values (1, 2, 3, 4 at filters 1, 6, 3, 8) go
    assert _kept(binary.view(-1, 1)) == [0, 2, 4, 5, 7, 9, 10, 11]
    plain = L1RankedStructureParameterPruner("q", "Filters", 0.5, ["0.weight"], model=model)
    # without rounding the six lowest (1..6 at filters 1, 6, 3, 8, 0, 10) go
    assert _kept(plain.keep("0.weight", model[0].weight, 0.5).view(-1, 1)) == [2, 4, 5, 7, 9, 11]


def test_l1_channels_round_the_input_channel_count():
    conv = nn.Conv2d(12, 2, 1)
    with torch.no_grad():
        for c, v in enumerate(VALUES):
            conv.weight[:, c].fill_(float(v))
    model = nn.Sequential(conv)
    pruner = L1RankedStructureParameterPruner("p", "Channels", 0.75, ["0.weight"], model=model, round_to=4)
    # 3 of 12 kept requested -> 4: the highest four values (12, 11, 10, 9 at channels 4, 11, 7, 2) stay
    assert _kept(pruner.keep("0.weight", conv.weight, 0.75).view(-1, 1)) == [2, 4, 7, 11]


def _schedule(round_to: int | None, weights: str = "conv1.weight", sparsity: float = 0.7):
    extra = f"\n    round_to: {round_to}" if round_to is not None else ""
    text = f"""
version: 1
pruners:
  p:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: {sparsity}
    weights: [{weights}]{extra}
policies:
  - pruner: {{instance_name: p}}
    epochs: [0]
"""
    return load_schedule("round.yaml", text=text)


def _prune(model: nn.Module, schedule, **kwargs) -> dict:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = build_scheduler(schedule, model, opt, example_input=torch.randn(1, 3, 32, 32), **kwargs)
    sched.on_epoch_begin(0)
    return sched.masks


def test_auto_dependency_round_to_rounds_every_coupled_group():
    torch.manual_seed(0)
    model = create_model("resnet20_cifar")[0]
    weights = "layer1.0.conv1.weight, layer2.0.conv1.weight, layer3.0.conv1.weight"
    l1 = model.layer1[0].conv1.weight.detach().abs().flatten(1).sum(1)
    masks = _prune(model, _schedule(None, weights), auto_dependency=True, round_to=8)
    counts = [len(_kept(masks[f"layer{i}.0.conv1.weight"])) for i in (1, 2, 3)]
    # 70 % of 16 / 32 / 64 filters leaves 5 / 10 / 20 (floor of the pruned count): rounded up to 8 / 16 / 24
    assert counts == [8, 16, 24]
    # an intra-block group's only voting member is that convolution: the 8 largest L1 norms stay
    assert _kept(masks["layer1.0.conv1.weight"]) == sorted(torch.topk(l1, 8).indices.tolist())


def test_a_pruner_round_to_wins_over_the_auto_dependency_default():
    model = create_model("resnet20_cifar")[0]
    masks = _prune(model, _schedule(4), auto_dependency=True, round_to=8)
    assert len(_kept(masks["conv1.weight"])) == 8  # 16 * 0.3 = 4.8 -> 5 kept -> 8 with round_to 4


@pytest.mark.parametrize(
    ("round_to", "message"),
    [
        (
            0,
            "round.yaml:9:15: pruners.p (L1RankedStructureParameterPruner): 'round_to' must be an integer >= 1",
        ),
        (32, "round_to 32 is larger than conv1.weight's 16 filters"),
    ],
)
def test_bad_round_to_in_a_schedule_is_a_schedule_error(round_to, message):
    model = create_model("resnet20_cifar")[0]
    with pytest.raises(ScheduleError) as info:
        _prune(model, _schedule(round_to))
    assert message in info.value.render()


def test_auto_dependency_round_to_wider_than_a_group_is_refused():
    model = create_model("resnet20_cifar")[0]
    with pytest.raises(ScheduleError, match="round_to 32 is larger than the 16 channels"):
        _prune(model, _schedule(None), auto_dependency=True, round_to=32)
    with pytest.raises(ScheduleError, match="round_to must be an integer >= 1"):
        _prune(model, _schedule(None), auto_dependency=True, round_to=0)


class Chain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 12, 1, bias=False)
        self.b = nn.Conv2d(12, 4, 1, bias=False)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def _chain() -> Chain:
    model = Chain()
    with torch.no_grad():
        model.a.weight.fill_(1.0)
        model.a.weight[[0, 1, 3, 5, 6, 8, 10]] = 0  # 7 zero filters: 5 kept
        for c, v in enumerate(VALUES):
            model.b.weight[:, c].fill_(float(v))  # the readers' weights rank the zero filters
    return model


def test_thin_round_to_keeps_back_the_highest_ranked_removable_channels():
    model = _chain()
    x = torch.randn(2, 3, 4, 4)
    expected = model(x)
    thin_model(model, x, round_to=4)
    # 5 kept -> 8: of the zero filters 0, 1, 3, 5, 6, 8, 10 (values 5, 1, 3, 7, 2, 4, 6) the three highest-ranked
    # come back: 5 (7), 10 (6), 0 (5)
    assert model.a.out_channels == 8 and model.b.in_channels == 8
    kept = [0, 2, 4, 5, 7, 9, 10, 11]
    assert model.b.weight[0, :, 0, 0].tolist() == [float(VALUES[c]) for c in kept]
    torch.testing.assert_close(model(x), expected)
    with pytest.raises(ThinningError, match="round_to 16 is larger than the 12 channels"):
        thin_model(_chain(), x, round_to=16)


def test_thin_cli_round_to(tmp_path):
    model, spec = create_model("resnet20_cifar")
    with torch.no_grad():
        model.layer1[0].conv1.weight[:11] = 0  # 5 of 16 filters kept
        model.layer1[0].bn1.bias[:11] = 0
    src = tmp_path / "run.pt"
    save_checkpoint(src, build_checkpoint(state_dict=model.state_dict(), model=spec.to_dict(), masks={}))
    result = CliRunner().invoke(cli, ["thin", str(src), "--round-to", "8", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["round_to"] == 8
    assert load_model(tmp_path / "run.compact.pt").layer1[0].conv1.out_channels == 8
    bad = CliRunner().invoke(cli, ["thin", str(src), "--round-to", "0"])
    assert bad.exit_code == 2 and "--round-to" in bad.output
    wide = CliRunner().invoke(cli, ["thin", str(src), "--round-to", "32", "-o", str(tmp_path / "w.pt")])
    assert wide.exit_code == 2 and "round_to 32 is larger" in wide.output
    assert not (tmp_path / "w.pt").exists()


def test_plan_shows_requested_and_rounded_kept_counts(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        """version: 1
pruners:
  p:
    class: L1RankedStructureParameterPruner_AGP
    initial_sparsity: 0.0
    final_sparsity: 0.7
    group_type: Filters
    weights: [module.layer1.0.conv1.weight, module.layer2.0.conv1.weight]
    round_to: 8
policies:
  - pruner: {instance_name: p}
    starting_epoch: 0
    ending_epoch: 3
    frequency: 1
"""
    )
    result = CliRunner().invoke(cli, ["plan", str(path), "--model", "resnet20_cifar", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rounding"]
    assert row["round_to"] == 8 and row["target"] == pytest.approx(0.7)
    # 16 filters: 11 pruned -> 5 requested -> 8; 32 filters: 22 pruned -> 10 requested -> 16
    assert [(r["width"], r["requested_kept"], r["kept"]) for r in row["layers"]] == [(16, 5, 8), (32, 10, 16)]
    text = CliRunner().invoke(cli, ["plan", str(path), "--model", "resnet20_cifar"])
    assert "layer1.0.conv1.weight: keeps 8 of 16 (requested 5)" in text.output


def test_report_lists_each_rounding_pruners_kept_counts():
    from prunecli.report.build import ReportInputs, ReportOptions, assemble_report

    def net(a: int, b: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, a, 3), nn.ReLU(), nn.Conv2d(a, b, 3), nn.Flatten(1))

    schedule = """version: 1
pruners:
  p:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.5
    weights: [module.0.weight, module.2.weight]
    round_to: 8
policies:
  - pruner: {instance_name: p}
    epochs: [0]
"""
    inputs = ReportInputs(
        model=net(8, 12),
        dense=net(16, 24),
        input_shape=(1, 8, 8),
        source_kind="inputs",
        schedule_text=schedule,
    )
    (row,) = assemble_report(inputs, ReportOptions(latency=False))["channel_rounding"]
    assert row["instance"] == "pruners.p" and row["round_to"] == 8
    assert [(r["tensor"], r["width"], r["kept"], r["multiple"]) for r in row["layers"]] == [
        ("0.weight", 16, 8, True),
        ("2.weight", 24, 12, False),
    ]
