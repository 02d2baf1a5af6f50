"""Real Distiller schedules run end to end on fake data, one step per epoch, to a compact checkpoint.

Every schedule runs until its last pruning/thinning epoch (the default when no --epochs is given),
so each pruner fires on its scheduled epochs; only the amount of data is cut.
"""

import json
import os

import pytest
import torch
from click.testing import CliRunner

from prunecli.checkpoint import load_checkpoint, load_model  # noqa: E402
from prunecli.cli.main import cli  # noqa: E402
from prunecli.schedule import load_schedule  # noqa: E402

pytestmark = pytest.mark.slow

FAST = ["--dataset", "fake", "--max-steps-per-epoch", "1", "--max-eval-batches", "1", "-b", "4",
        "--device", "cpu", "--quiet", "--json", "--lr", "0.01"]  # fmt: skip


def run(examples_dir, relative, tmp_path, *extra):
    out = tmp_path / "run"
    args = ["run", os.path.join(examples_dir, relative), *FAST, "--out-dir", str(out), *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return out, doc, rows


def _plain(name: str) -> str:
    return ".".join(part for part in name.split(".") if part != "module")


def assert_fine_grained_targets_reached(schedule_path, run_dir):
    """AGP's last step reaches final_sparsity on every listed weight (checked on checkpoint.pt).

    The final thinning may drop all-zero columns of a sparse layer and the producer rows that only
    they read, so compact.pt can hold fewer weights; run_training has verified its outputs.
    """
    schedule = load_schedule(schedule_path)
    params = dict(load_model(run_dir / "checkpoint.pt").named_parameters())
    compact = dict(load_model(run_dir / "compact.pt").named_parameters())
    checked = 0
    for component in schedule.components["pruners"].values():
        if component.class_name != "AutomatedGradualPruner":
            continue
        for name in component.args["weights"]:
            tensor = params[_plain(name)]
            sparsity = float((tensor == 0).sum()) / tensor.numel()
            assert sparsity == pytest.approx(component.args["final_sparsity"], abs=0.01), name
            # only zeros, or weights whose outputs are read by nothing but zeros, may go
            assert int((compact[_plain(name)] != 0).sum()) <= int((tensor != 0).sum()), name
            checked += 1
    assert checked


def test_resnet20_filters_agp(examples_dir, tmp_path):
    relative = "agp-pruning/resnet20_filters.schedule_agp.yaml"
    out, doc, rows = run(examples_dir, relative, tmp_path)
    assert [r["epoch"] for r in rows] == list(range(49))  # last pruning epoch 48, thinning at 30
    dense_macs = 40_813_184  # Distiller's figure for resnet20_cifar
    assert rows[0]["macs"] == dense_macs
    assert rows[29]["params"] == rows[0]["params"]  # masks only before the thinning epoch
    assert rows[30]["macs"] < dense_macs and rows[30]["params"] < rows[0]["params"]
    assert_fine_grained_targets_reached(os.path.join(examples_dir, relative), out)
    assert doc["compressed"]["macs"] <= rows[30]["macs"]


def test_resnet56_filter_rank_matches_distillers_macs(examples_dir, tmp_path):
    out, doc, rows = run(
        examples_dir, "pruning_filters_for_efficient_convnets/resnet56_cifar_filter_rank.yaml", tmp_path
    )
    assert len(rows) == 1  # every policy but the LR one acts at epoch 0
    assert doc["dense"]["macs"] == 125_747_840
    # one-shot ranking + thinning at epoch 0: the count of removed filters fixes the MACs
    assert rows[0]["macs"] == 78_856_832
    assert doc["compressed"]["macs"] == 78_856_832
    assert load_checkpoint(out / "compact.pt")["recipe"] is not None


def test_vgg16_ssl_channels(examples_dir, tmp_path):
    # the regularizer spans epochs 0..179; two epochs exercise it and the epoch-0 channel removal
    out, doc, rows = run(
        examples_dir, "ssl/vgg16_cifar_ssl_channels_training.yaml", tmp_path, "--epochs", "2"
    )
    assert [r["epoch"] for r in rows] == [0, 1]
    assert any("never fires" in w or "cut short" in w for w in doc["warnings"])
    model = load_model(out / "compact.pt")
    assert sum(p.numel() for p in model.parameters()) <= doc["dense"]["params"]
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_alexnet_agp(examples_dir, tmp_path):
    relative = "agp-pruning/alexnet.schedule_agp.yaml"
    out, doc, rows = run(
        examples_dir, relative, tmp_path, "--model", "alexnet", "--set", "dataset_options.image_size=[3, 224, 224]",
        "--checkpoint-every", "100", "-b", "2",
    )  # fmt: skip
    assert [r["epoch"] for r in rows] == list(range(17))  # fc pruners: 0..18 step 2, last at 16
    assert_fine_grained_targets_reached(os.path.join(examples_dir, relative), out)
