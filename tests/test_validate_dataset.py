"""`prunecli validate SCHEDULE --model net.py:Net` sizes a user model for the data set: --dataset,
or else the one the schedule's thinning extension names (as `prunecli run` does)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from prunecli.cli.main import cli
from prunecli.validation import check_file

NET = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x)) + x
        return self.fc(x.mean(dim=(2, 3)))
"""

SCHEDULE = """
version: 1
pruners:
  p:
    class: L1RankedStructureParameterPruner
    desired_sparsity: 0.5
    group_type: Filters
    weights: [conv2.weight]
{extensions}
policies:
  - pruner:
      instance_name: p
    epochs: [0]
"""

EXTENSION = """
extensions:
  thinner:
    class: FilterRemover
    thinning_func_str: remove_filters
    arch: net
    dataset: digits
"""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "net.py").write_text(NET)
    (tmp_path / "with_dataset.yaml").write_text(SCHEDULE.format(extensions=EXTENSION))
    (tmp_path / "plain.yaml").write_text(SCHEDULE.format(extensions=""))
    return {name: str(tmp_path / name) for name in ("net.py", "with_dataset.yaml", "plain.yaml")}


def _validate(*args: str):
    return CliRunner().invoke(cli, ["validate", *args])


def test_dataset_comes_from_the_schedules_thinning_extension(files: dict[str, str]) -> None:
    result = _validate(files["with_dataset.yaml"], "--model", f"{files['net.py']}:Net", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["valid"] is True and doc["problems"] == []
    # conv2 feeds a residual addition with conv1 but is pruned alone: the dependency check ran on
    # the model with a digits-shaped input and says so
    assert any("conv1.weight" in w["message"] for w in doc["warnings"])


def test_without_a_data_set_the_error_names_the_option_that_fixes_it(files: dict[str, str]) -> None:
    model = f"{files['net.py']}:Net"
    failed = _validate(files["plain.yaml"], "--model", model)
    assert failed.exit_code == 2
    assert "cannot tell the input shape" in failed.output
    assert "Traceback" not in failed.output
    fixed = _validate(files["plain.yaml"], "--model", model, "--dataset", "digits")
    assert fixed.exit_code == 0, fixed.output
    assert "every name matches model" in " ".join(fixed.output.split())


def test_dataset_option_overrides_the_schedule_and_sets_the_class_count(files: dict[str, str]) -> None:
    model = f"{files['net.py']}:Net"
    default = check_file(files["with_dataset.yaml"], model)
    assert default.valid and default.model.shapes["fc.weight"] == (10, 8)  # digits: 10 classes
    # names only (no trace, so the 3-channel input does not matter): CIFAR-100 has 100 classes
    chosen = check_file(files["with_dataset.yaml"], model, dataset="cifar100", dependencies=False)
    assert chosen.valid and chosen.model.shapes["fc.weight"] == (100, 8)


def test_unknown_dataset_is_refused_with_close_names(files: dict[str, str]) -> None:
    result = _validate(files["with_dataset.yaml"], "--model", f"{files['net.py']}:Net", "--dataset", "digit")
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "unknown data set 'digit'" in text and "did you mean digits?" in text
