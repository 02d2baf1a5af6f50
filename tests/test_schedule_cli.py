"""`prunecli validate` / `prunecli plan` behaviour beyond single mistakes."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from prunecli.cli.main import cli
from prunecli.errors import Problem, SourceLocation

VALID = """\
pruners:
  p: {class: L1RankedStructureParameterPruner_AGP, initial_sparsity: 0.1, final_sparsity: 0.5,
      group_type: Filters, weights: [module.layer2.0.conv2.weight, module.layer2.0.downsample.0.weight]}
lr_schedulers:
  lr: {class: StepLR, step_size: 10}
policies:
  - pruner: {instance_name: p}
    starting_epoch: 0
    ending_epoch: 6
    frequency: 2
  - lr_scheduler: {instance_name: lr}
    starting_epoch: 0
    ending_epoch: 20
    frequency: 1
"""


def _write(tmp_path: Path, text: str = VALID) -> str:
    f = tmp_path / "s.yaml"
    f.write_text(text)
    return str(f)


def test_valid_json_summary(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["validate", _write(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["valid"] is True and doc["problems"] == []
    assert doc["summary"]["components"]["pruners"] == 1
    assert doc["summary"]["policies"] == 2
    assert (doc["summary"]["first_epoch"], doc["summary"]["last_epoch"]) == (0, 19)
    assert doc["summary"]["last_pruning_epoch"] == 4


def test_not_a_schedule_json_and_text(tmp_path) -> None:
    f = tmp_path / "amc.yaml"
    f.write_text("network:\n  resnet20_cifar: [module.layer1.0.conv1, module.layer1.1.conv1]\n")
    result = CliRunner().invoke(cli, ["validate", str(f), "--json"])
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["classification"] == "amc-network" and doc["valid"] is False
    text = CliRunner().invoke(cli, ["validate", str(f)])
    assert text.exit_code == 2
    assert "not a schedule: AMC network description" in " ".join(text.output.split())


def test_missing_file_is_a_clean_error(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "file not found" in result.output and "Traceback" not in result.output


@pytest.fixture
def fake_dependency_check(monkeypatch):
    """Stand-in for prunecli.graph.schedule_check, recording what validate passes it."""
    calls = []

    def check_schedule_dependencies(schedule, model, example_input):
        calls.append((schedule, model, example_input))
        return [
            Problem(
                "layer2.0.conv2 and layer2.0.downsample.0 feed one add without a Leader group",
                SourceLocation("s.yaml", 3, 7),
                "add group_dependency: Leader",
            )
        ]

    module = types.ModuleType("prunecli.graph.schedule_check")
    module.check_schedule_dependencies = check_schedule_dependencies
    monkeypatch.setitem(sys.modules, "prunecli.graph.schedule_check", module)
    return calls


def test_dependency_findings_are_warnings_unless_strict(tmp_path, fake_dependency_check) -> None:
    path = _write(tmp_path)
    result = CliRunner().invoke(cli, ["validate", path, "--model", "resnet20_cifar"])
    assert result.exit_code == 0, result.output
    assert "without a Leader group" in " ".join(result.output.split())
    schedule, model, example = fake_dependency_check[0]
    # the check receives the resolved names, the real model and an input of the model's shape
    assert schedule.components["pruners"]["p"].args["weights"] == [
        "layer2.0.conv2.weight",
        "layer2.0.downsample.0.weight",
    ]
    assert tuple(example.shape) == (1, 3, 32, 32)
    assert model(example).shape == (1, 10)
    strict = CliRunner().invoke(cli, ["validate", path, "--model", "resnet20_cifar", "--strict", "--json"])
    assert strict.exit_code == 2
    doc = json.loads(strict.stdout)
    assert doc["valid"] is False and doc["warnings"][0]["line"] == 3


def test_plan_json_on_invalid_schedule(tmp_path) -> None:
    result = CliRunner().invoke(
        cli, ["plan", _write(tmp_path, VALID.replace("step_size", "stepsize")), "--json"]
    )
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["valid"] is False and doc["problems"][0]["line"] == 5
