"""Distiller's epoch semantics and the AGP formula, as properties."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from prunecli.cli.main import cli
from prunecli.errors import ScheduleError
from prunecli.schedule import agp_target, load_schedule, plan
from prunecli.schedule.timeline import agp_span

sparsities = st.floats(min_value=0.0, max_value=0.99, allow_nan=False)


@st.composite
def agp_cases(draw):
    start = draw(st.integers(0, 50))
    freq = draw(st.integers(1, 6))
    end = draw(st.integers(start + freq + 1, start + 120))  # span > 0
    initial = draw(sparsities)
    final = draw(sparsities.filter(lambda f: f > initial))
    return initial, final, start, end, freq


@settings(max_examples=200, deadline=None)
@given(agp_cases())
def test_agp_targets_ramp_from_initial_to_exactly_final(case) -> None:
    initial, final, start, end, freq = case
    epochs = list(range(start, end, freq))
    targets = [
        agp_target(initial, final, e, start, end, freq)
        for e in epochs
        if e <= start + agp_span(start, end, freq)
    ]
    assert targets[0] == pytest.approx(initial, abs=1e-12)
    assert targets[-1] == final  # exactly: the last scheduled pruning epoch is start + span
    assert all(b >= a for a, b in zip(targets, targets[1:], strict=False))
    # independent oracle: the cubic written out
    span = ((end - start - 1) // freq) * freq
    mid = epochs[len(targets) // 2]
    assert targets[len(targets) // 2] == pytest.approx(
        final + (initial - final) * (1 - (mid - start) / span) ** 3
    )


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 40), st.integers(1, 60), st.integers(1, 9))
def test_active_epochs_equal_python_range(start: int, length: int, freq: int) -> None:
    end = start + length
    if freq > length:
        freq = length
    text = (
        "lr_schedulers:\n  lr: {class: StepLR, step_size: 1}\n"
        f"policies:\n  - lr_scheduler: {{instance_name: lr}}\n    starting_epoch: {start}\n"
        f"    ending_epoch: {end}\n    frequency: {freq}\n"
    )
    schedule = load_schedule("p.yaml", text=text)
    assert list(schedule.policies[0].epochs) == list(range(start, end, freq))
    fired = [ep.epoch for ep in plan(schedule, end + 2) if ep.entries]
    assert fired == list(range(start, end, freq))


def test_span_zero_is_refused() -> None:
    with pytest.raises(ScheduleError, match="span"):
        agp_target(0.1, 0.5, 0, 0, 1, 1)


SCHEDULE = """\
pruners:
  agp: {class: AutomatedGradualPruner, initial_sparsity: 0.2, final_sparsity: 0.8, weights: [a.weight]}
  one: {class: L1RankedStructureParameterPruner, group_type: Filters, desired_sparsity: 0.3, weights: [b.weight]}
  lvl: {class: SparsityLevelParameterPruner, levels: {a.weight: 0.4, b.weight: 0.6}}
lr_schedulers:
  lr: {class: ExponentialLR, gamma: 0.9}
policies:
  - lr_scheduler: {instance_name: lr}
    starting_epoch: 0
    ending_epoch: 10
    frequency: 1
  - pruner: {instance_name: agp}
    starting_epoch: 1
    ending_epoch: 8
    frequency: 3
  - pruner: {instance_name: one}
    epochs: [4]
  - pruner:
      instance_name: lvl
      args: {levels: {a.weight: 0.5}}
    epochs: [4]
"""


def test_plan_order_targets_and_carry_over() -> None:
    schedule = load_schedule("s.yaml", text=SCHEDULE)
    plans = plan(schedule)
    assert len(plans) == 8  # the last non-LR epoch is 7 (1, 4, 7)
    assert [e.instance for e in plans[4].entries] == ["agp", "one", "lvl", "lr"]
    agp = {ep.epoch: e.target for ep in plans for e in ep.entries if e.instance == "agp"}
    assert agp == {1: pytest.approx(0.2), 4: pytest.approx(0.8 - 0.6 * 0.5**3), 7: 0.8}
    assert plans[4].entries[1].target == 0.3
    assert plans[4].entries[2].target == 0.5  # the policy's levels override the pruner's
    assert plans[6].targets == {"agp": plans[4].targets["agp"], "one": 0.3, "lvl": 0.5}
    assert plans[0].entries[0].kind == "lr_scheduler" and plans[0].targets == {}


def test_plan_command_json_and_table(tmp_path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(SCHEDULE)
    result = CliRunner().invoke(cli, ["plan", str(f), "--json", "--epochs", "5"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["epochs"] == 5 and len(doc["plan"]) == 5
    assert [e["instance"] for e in doc["plan"][4]["entries"]] == ["agp", "one", "lvl", "lr"]
    table = CliRunner().invoke(cli, ["plan", str(f)])
    assert table.exit_code == 0 and "0.7250" in table.output  # 0.8 - 0.6/8 at epoch 4


def test_plan_plot(tmp_path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(SCHEDULE)
    out = tmp_path / "plan.png"
    result = CliRunner().invoke(cli, ["plan", str(f), "--plot", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1000
