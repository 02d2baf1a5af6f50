"""``prunecli run`` on the seed's LPOT YAML and on a Neural Compressor config, end to end.

The LPOT file is the documented example verbatim except for what a test must shrink (the image
folder, made here with 40x40 images; the crop size; batch size, epochs and steps). Its ``train:``
section must decide the run: the resolved configuration and the trained masks are checked
against the file's own numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from prunecli.checkpoint import load_checkpoint
from prunecli.cli.main import cli

SEED = Path(__file__).parent / "data" / "dialects" / "lpot_seed.yaml"


def _image_folder(root: Path, classes: int = 3, per_class: int = 10) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = (rng.random((40, 40, 3)) * 80 + 80 * c).astype("uint8")
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")
    return root


@pytest.mark.slow
def test_the_seed_lpot_yaml_runs_with_its_own_training_section(tmp_path: Path) -> None:
    images = _image_folder(tmp_path / "images")
    text = SEED.read_text()
    for old, new in (
        ("/path/to/imagenet/train", str(images)),
        ("size: 224", "size: 32"),
        ("batch_size: 256", "batch_size: 8"),
        ("end_epoch: 10", "end_epoch: 3"),
        ("iteration: 100", "iteration: 2"),
    ):
        assert old in text
        text = text.replace(old, new)
    schedule = tmp_path / "lpot.yaml"
    schedule.write_text(text)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli, ["run", str(schedule), "--model", "resnet20_cifar", "-o", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert (config["dataset"], config["data_dir"]) == ("imagefolder", str(images))
    assert (config["epochs"], config["max_steps_per_epoch"], config["batch_size"]) == (3, 2, 8)
    assert (config["optimizer"], config["lr"], config["momentum"]) == ("sgd", 0.1, 0.9)
    assert config["weight_decay"] == 0.0004 and config["optimizer_args"] == {"nesterov": False}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    payload = load_checkpoint(out / "checkpoint.pt")
    assert payload["extras"]["input_shape"] == [3, 32, 32]  # the file's RandomResizedCrop size
    weight = payload["state_dict"]["layer1.0.conv1.weight"]
    assert float((weight == 0).float().mean()) == pytest.approx(int(0.97 * weight.numel()) / weight.numel())
    assert (out / "compact.pt").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["input_shape"] == [3, 32, 32]


@pytest.mark.slow
def test_a_neural_compressor_config_runs_and_thins(tmp_path: Path) -> None:
    images = _image_folder(tmp_path / "images")
    config = tmp_path / "inc.yaml"
    config.write_text(
        "pruning_type: magnitude\npattern: 1xchannel\ntarget_sparsity: 0.5\npruning_scope: local\n"
        "start_step: 0\nend_step: 4\npruning_frequency: 2\nsparsity_decay_type: linear\n"
        "op_names: ['layer1\\.[0-9]\\.conv1']\n"
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        [
            "run",
            str(config),
            "--model",
            "resnet20_cifar",
            "--dataset",
            "imagefolder",
            "--data-dir",
            str(images),
            "--set",
            "dataset_options.image_size=32",
            "--epochs",
            "3",
            "--max-steps-per-epoch",
            "2",
            "-b",
            "8",
            "-o",
            str(out),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = load_checkpoint(out / "checkpoint.pt")
    for block in range(3):
        weight = payload["state_dict"][f"layer1.{block}.conv1.weight"]
        pruned = (weight.abs().sum(dim=(1, 2, 3)) == 0).sum().item()
        assert pruned == 8  # half of 16 filters, the level reached at step 4
    assert torch.count_nonzero(payload["state_dict"]["layer2.0.conv1.weight"]) > 0
    report = json.loads((out / "report.json").read_text())
    assert report["macs_ratio"] < 1.0  # thinning removed the filters and the channels they fed


def test_a_step_counting_config_needs_the_number_of_epochs(tmp_path: Path) -> None:
    config = tmp_path / "inc.yaml"
    config.write_text("pruning_type: magnitude\npattern: 1x1\nstart_step: 0\nend_step: 500\n")
    result = CliRunner().invoke(
        cli, ["run", str(config), "--model", "resnet20_cifar", "--dataset", "fake", "-o", str(tmp_path / "r")]
    )
    assert result.exit_code == 2, result.output
    assert "pass --epochs N" in " ".join(result.output.split())
    assert not (tmp_path / "r").exists()
