"""NNI config_lists: masks equal NNI 3.0's own and the hand-written native schedule's; selection rules.

The oracle is tests/data/nni_oracle/: ``scripts/nni_oracle.py`` ran NNI 3.0's pruners (torch
2.14.1, CPU) on ``tests.support.nni.OracleNet`` with the stored weights for every config_list of
``cases.json`` and recorded each pruned weight's mask digest, zero count and removed output
channels in ``masks.json``. prunecli never imports NNI.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from prunecli.cli.main import cli
from prunecli.errors import ScheduleError
from prunecli.schedule import load_schedule
from prunecli.schedule.dialects.nni_select import Selector
from prunecli.schedule.names import module_classes, resolve_names
from tests.support.nni import CASES, MASKS, mask_summary, oracle_model, prunecli_masks, pruned_rows

ORACLE_CASES = json.loads(CASES.read_text())
ORACLE_MASKS = json.loads(MASKS.read_text())["cases"]


@pytest.mark.parametrize("case", sorted(ORACLE_CASES))
def test_masks_equal_nni_own(case: str) -> None:
    spec = ORACLE_CASES[case]
    got = mask_summary(prunecli_masks(json.dumps(spec["config_list"]), f"{case}.json", pruner=spec["pruner"]))
    assert got == ORACLE_MASKS[case]


def test_oracle_counts_follow_nni_rounding() -> None:
    """Independent of both tools: NNI removes int(ratio * n) of each layer (filters for L1NormPruner)."""
    case = ORACLE_MASKS["l1_conv_v3"]
    assert [len(case[f"conv{i}.weight"]["pruned_rows"]) for i in (1, 2, 3)] == [4, 8, 8]
    level = ORACLE_MASKS["level_linear_and_conv"]
    assert level["fc1.weight"]["zeros"] == int(0.7 * 64 * 24)
    assert level["conv2.weight"]["zeros"] == int(0.3 * 16 * 8 * 9)


NATIVE_EQUIVALENTS = {
    "l1_conv_v3": """
version: 1
pruners:
  convs: {target: filters, metric: l1, sparsity: 0.5, weights: [conv1.weight, conv2.weight, conv3.weight]}
policies:
  - {pruner: {instance_name: convs}, epochs: [0]}
""",
    "level_linear_and_conv": """
version: 1
pruners:
  fc: {preset: LevelPruner, sparsity: 0.7, weights: [fc1.weight]}
  conv: {target: element, metric: l1, sparsity: 0.3, weights: [conv2.weight]}
policies:
  - {pruner: {instance_name: fc}, epochs: [0]}
  - {pruner: {instance_name: conv}, epochs: [0]}
""",
    "l1_overlap": """
version: 1
pruners:
  low: {preset: L1NormPruner, sparsity: 0.25, weights: [conv1.weight, conv2.weight]}
  high: {preset: L1NormPruner, sparsity: 0.5, weights: [conv3.weight]}
policies:
  - {pruner: {instance_name: low}, epochs: [0]}
  - {pruner: {instance_name: high}, epochs: [0]}
""",
}


@pytest.mark.parametrize("case", sorted(NATIVE_EQUIVALENTS))
def test_masks_equal_the_native_schedule(case: str) -> None:
    spec = ORACLE_CASES[case]
    nni = prunecli_masks(json.dumps(spec["config_list"]), f"{case}.json", pruner=spec["pruner"])
    native = prunecli_masks(NATIVE_EQUIVALENTS[case], f"{case}.yaml")
    assert nni.keys() == native.keys() and nni
    for name in nni:
        assert torch.equal(nni[name], native[name]), name


def test_a_later_entry_overrides_an_earlier_one_with_a_warning() -> None:
    model = oracle_model()
    text = "pruner: L1NormPruner\nconfig_list:\n  - {op_types: [Conv2d], sparse_ratio: 0.25}\n  - {op_names: [conv3], sparse_ratio: 0.5}\n"
    schedule = load_schedule("o.yaml", text=text)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    bound = resolve_names(schedule, shapes, module_classes(model))
    pruners = bound.components["pruners"]
    assert pruners["entry_1"].args["weights"] == ["conv1.weight", "conv2.weight"]
    assert pruners["entry_2"].args["weights"] == ["conv3.weight"]
    assert pruners["entry_2"].args["sparsity"] == 0.5
    [warning] = bound.warnings
    assert "'conv3' is selected by config_list entries #1 and #2: the later one applies" in warning.message
    assert warning.location.line == 4


def test_exclude_entries_leave_modules_out_of_every_entry() -> None:
    modules = {"": "Net", "conv1": "Conv2d", "conv2": "Conv2d", "fc": "Linear", "fc.act": "ReLU"}
    assert Selector(op_types=("Conv2d",)).select(modules) == ["conv1", "conv2"]
    assert Selector(op_types=("default",)).select(modules) == ["conv1", "conv2", "fc"]
    # names and types intersect; re.match anchors at the start only
    assert Selector(op_types=("Linear",), op_names_re=("f",)).select(modules) == ["fc"]
    assert Selector(op_names_re=(".*conv.*",), exclude_op_names=("conv1",)).select(modules) == ["conv2"]
    model = oracle_model()
    text = (
        "pruner: LevelPruner\nconfig_list:\n  - {op_types: [Conv2d, Linear], sparsity_per_layer: 0.5}\n"
        "  - {exclude: true, op_types: [Linear]}\n  - {exclude: true, op_names: [conv2]}\n"
    )
    bound = resolve_names(
        load_schedule("x.yaml", text=text),
        {n: tuple(p.shape) for n, p in model.named_parameters()},
        module_classes(model),
    )
    assert bound.components["pruners"]["entry_1"].args["weights"] == ["conv1.weight", "conv3.weight"]


def test_binding_needs_the_model_modules() -> None:
    schedule = load_schedule(
        "x.json", text='[{"op_types": ["Conv2d"], "sparse_ratio": 0.5}]', pruner="FPGMPruner"
    )
    assert schedule.dialect == "nni"
    assert schedule.components["pruners"]["entry_1"].args == {
        "preset": "FPGMPruner",
        "sparsity": 0.5,
        "weights": [],
    }
    with pytest.raises(ScheduleError, match="needs the model"):
        resolve_names(schedule, {"conv1.weight": (8, 3, 3, 3)})


def test_v2_and_v3_keys_map_onto_the_engine() -> None:
    text = """
pruner: L1NormPruner
config_list:
  - {op_types: [Conv2d], total_sparsity: 0.5, max_sparsity_per_layer: 0.8}
  - {op_names: [fc1], sparse_ratio: 0.9, max_sparse_ratio: 0.6, granularity: in_channel}
  - {op_names: [fc2], sparse_ratio: 0.1, min_sparse_ratio: 0.3, granularity: [2, 4]}
"""
    pruners = load_schedule("m.yaml", text=text).components["pruners"]
    assert pruners["total_sparsity_1"].args["allocation"] == {
        "kind": "global",
        "normalize": "none",
        "rounding": "down",
        "max_sparsity_per_layer": 0.8,
    }
    assert pruners["entry_2"].args["sparsity"] == 0.6  # NNI clamps into [min, max]
    assert pruners["entry_2"].args["target"] == {"kind": "channels"}
    assert pruners["entry_3"].args["sparsity"] == 0.3
    assert pruners["entry_3"].args["target"] == {"kind": "block", "shape": [2, 4]}


def test_iterative_pruners_prune_total_times() -> None:
    text = "pruner: AGPPruner\nstart_epoch: 2\ntotal_times: 4\ninterval_epochs: 3\nconfig_list:\n  - {op_types: [Linear], sparse_ratio: 0.8}\n"
    [policy] = load_schedule("a.yaml", text=text).policies
    assert policy.epochs == (2, 5, 8, 11, 14)  # the ramp starts at 2; NNI's 4 steps follow
    one_shot = load_schedule(
        "b.yaml", text="pruner: FPGMPruner\nconfig_list:\n  - {op_types: [Conv2d], sparse_ratio: 0.5}\n"
    )
    assert [p.epochs for p in one_shot.policies] == [(0,)]


def test_pruner_from_the_command_line_is_kept_with_the_stored_text() -> None:
    text = "- op_types: [Conv2d]\n  sparse_ratio: 0.5\n"
    schedule = load_schedule("l.yaml", text=text, pruner="FPGMPruner")
    again = load_schedule("schedule.yaml", text=schedule.text)  # what a run directory stores
    assert again.components["pruners"]["entry_1"].args["preset"] == "FPGMPruner"
    with pytest.raises(ScheduleError, match="--pruner does not apply"):
        load_schedule("d.yaml", text="version: 1\npolicies: []\n", pruner="FPGMPruner")


def test_validate_names_the_dialect(tmp_path) -> None:
    path = tmp_path / "nni.json"
    path.write_text('[{"op_types": ["Conv2d"], "sparse_ratio": 0.5}]')
    runner = CliRunner()
    result = runner.invoke(
        cli, ["validate", str(path), "--pruner", "L1NormPruner", "--model", "resnet_digits"]
    )
    assert result.exit_code == 0, result.output
    assert "(NNI config_list)" in result.output
    result = runner.invoke(cli, ["validate", str(path), "--pruner", "L1NormPruner", "--json"])
    assert json.loads(result.output)["dialect"] == "nni"
    result = runner.invoke(cli, ["validate", str(path), "--json"])  # no pruner: invalid, still recognised
    doc = json.loads(result.output)
    assert result.exit_code == 2 and doc["dialect"] == "nni" and not doc["valid"]
    distiller = tmp_path / "d.yaml"
    distiller.write_text("version: 1\npolicies: []\n")
    assert (
        json.loads(runner.invoke(cli, ["validate", str(distiller), "--json"]).output)["dialect"]
        == "distiller"
    )


def test_global_rounding_down_removes_nni_count() -> None:
    """int(level * weights) elements go with ``rounding: down``; at least level with the default."""
    from prunecli.engine.allocation import Budget, Candidate, Global

    scores = [torch.arange(7.0), torch.arange(6.0) + 0.5]  # 13 unit-cost groups
    cands = [Candidate(None, s, torch.ones_like(s), True) for s in scores]  # type: ignore[arg-type]
    budget = Budget(level=0.5, final=0.5, total=13.0)  # 6.5 weights
    removed = {
        r: sum(int((k == 0).sum()) for k in Global("none", rounding=r).allocate(cands, budget))
        for r in ("up", "down")
    }
    assert removed == {"up": 7, "down": 6}
    with pytest.raises(ValueError, match="rounding"):
        Global(rounding="nearest")


def test_agp_pruner_reaches_nni_levels_step_by_step() -> None:
    """NNI's AGP: after step i of T the level is (1 - (1 - i/T)^3) * s (peers-notes, NNI 2's task generator)."""
    from prunecli.compression import build_compression

    text = "pruner: AGPPruner\ntotal_times: 3\nconfig_list:\n  - {op_names: [fc1], sparse_ratio: 0.6}\n"
    model = oracle_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = build_compression(load_schedule("agp.yaml", text=text), model, optimizer)
    n = model.fc1.weight.numel()
    for epoch in range(4):
        scheduler.on_epoch_begin(epoch, optimizer)
        mask = scheduler.masks["fc1.weight"]
        zeros = 0 if mask is None else int((mask == 0).sum())
        assert zeros == int((1 - (1 - epoch / 3) ** 3) * 0.6 * n), epoch


def test_taylor_pruner_trains_training_steps_then_ranks_by_the_gathered_gradients() -> None:
    """NNI's TaylorFOWeightPruner: |w * grad| summed over training_steps, lowest filters go."""
    import torch.nn.functional as F

    from prunecli.compression import build_compression

    text = "pruner: TaylorFOWeightPruner\ntraining_steps: 2\nconfig_list:\n  - {op_types: [Conv2d], sparse_ratio: 0.5}\n"
    schedule = load_schedule("taylor.yaml", text=text)
    assert schedule.components["pruners"]["entry_1"].args["schedule"]["start_step"] == 2
    torch.manual_seed(0)
    model = oracle_model().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scheduler = build_compression(schedule, model, optimizer, example_input=torch.randn(1, 3, 8, 8))
    convs = {n: p for n, p in model.named_parameters() if n.startswith("conv") and n.endswith("weight")}
    sums = {n: torch.zeros_like(p) for n, p in convs.items()}
    steps = 3
    scheduler.on_epoch_begin(0, optimizer)
    assert all(scheduler.masks.get(n) is None for n in convs)  # nothing before the gathered steps
    for step in range(steps):
        scheduler.on_minibatch_begin(0, step, steps, optimizer)
        if step == 2:
            break
        loss = F.cross_entropy(model(torch.randn(8, 3, 8, 8)), torch.arange(8))
        optimizer.zero_grad()
        loss.backward()
        for n, p in convs.items():
            sums[n] += (p.detach() * p.grad).abs()
        scheduler.before_parameter_optimization(0, step, steps, optimizer)
        optimizer.step()
        scheduler.on_minibatch_end(0, step, steps, optimizer)
    for name, total in sums.items():
        scores = total.flatten(1).sum(1)
        expected = set(scores.argsort()[: int(0.5 * scores.numel())].tolist())
        mask = scheduler.masks[name]
        assert set(pruned_rows(mask)) == expected, name
