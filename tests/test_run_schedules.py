"""The ready schedules in schedules/ prune and thin their zoo models (fake data, one step per epoch)."""

import json
import os

import pytest
from click.testing import CliRunner

from prunecli.cli.main import cli  # noqa: E402

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ["--dataset", "fake", "--set", "data_dir=null", "--set", "workers=0", "--max-steps-per-epoch", "1",
        "--max-eval-batches", "1", "-b", "4", "--device", "cpu", "--quiet", "--json"]  # fmt: skip


def run(name, tmp_path, *extra):
    args = [
        "run",
        os.path.join(REPO, "schedules", f"{name}.yaml"),
        *FAST,
        "--out-dir",
        str(tmp_path / "r"),
        *extra,
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_resnet20_cifar_schedule_thins_to_the_hand_computed_macs(tmp_path):
    doc = run("resnet20_cifar", tmp_path, "--epochs", "31")  # thinning at 30; fine-tuning cut
    assert doc["dense"]["macs"] == 40_813_184
    # stage 2: inner convs 32->16, stage outputs 32->24; stage 3: 64->32 and 64->48 (see the schedule);
    # summing Distiller's per-layer formula over the 22 layers gives:
    assert doc["compressed"]["macs"] == 24_650_208
    assert doc["warnings"] == []  # every pruning policy and the thinning fit in 31 epochs


def test_vgg16_cifar_schedule_prunes_and_thins_at_epoch_0(tmp_path):
    doc = run("vgg16_cifar", tmp_path, "--epochs", "1")
    assert doc["dense"]["macs"] == 313_201_664
    assert doc["macs_reduction"] > 0.40
    assert doc["metrics"][0]["macs"] == doc["compressed"]["macs"]  # thinned during epoch 0
