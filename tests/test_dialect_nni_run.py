"""An NNI config_list through ``prunecli run``: pruned, thinned and reported like a Distiller schedule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from prunecli.cli.main import cli

pytestmark = pytest.mark.slow

CONFIG_LIST = """\
# NNI 3 keys; the pruner comes from the command line
- op_types: [Conv2d]
  op_names_re: ['layer\\d\\.0\\.conv1']
  sparse_ratio: 0.5
- op_names: [layer2.0.conv2]
  sparse_ratio: 0.25
- exclude_op_names: [layer2.0.conv2]
  op_names: [layer2.0.conv2]
  exclude_op_types: [Linear]
  sparse_ratio: 0.9
"""


def test_nni_config_list_runs_with_thinning_and_a_report(tmp_path: Path) -> None:
    import torch

    from prunecli.api import load_model

    schedule = tmp_path / "nni.yaml"
    schedule.write_text(CONFIG_LIST)
    out = tmp_path / "run"
    args = ["run", str(schedule), "--pruner", "L1NormPruner", "--model", "resnet_digits", "--dataset", "digits",
            "--epochs", "2", "--max-steps-per-epoch", "2", "--max-eval-batches", "1", "-b", "16",
            "--device", "cpu", "--quiet", "--json", "--out-dir", str(out)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    # the last entry selects nothing (its module is excluded by itself): the two others prune
    compact = load_model(out / "compact.pt")
    widths = {n: tuple(p.shape) for n, p in compact.named_parameters() if p.dim() == 4}
    assert widths["layer1.0.conv1.weight"][0] == 32 - 16
    assert widths["layer2.0.conv1.weight"][0] == 64 - 32
    # layer2.0.conv2 feeds the residual sum with the downsample branch: masked, not thinned
    assert widths["layer2.0.conv2.weight"] == (64, 32, 3, 3)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    conv2_mask = state["masks"]["layer2.0.conv2.weight"]
    assert int((conv2_mask.flatten(1).sum(1) == 0).sum()) == 16  # a quarter of 64 filters
    # dense 2,116,224 MACs; each pruned conv1 halves its own output and the next conv's input
    assert doc["compressed"]["macs"] < doc["dense"]["macs"]
    report = json.loads((out / "report.json").read_text())
    # the stored schedule names its pruner, so the run directory is self-contained
    assert report["schedule"]["text"].startswith("pruner: L1NormPruner\nconfig_list:\n")
    assert report["macs_ratio"] == pytest.approx(doc["compressed"]["macs"] / doc["dense"]["macs"])
    again = CliRunner().invoke(cli, ["report", str(out), "--json"])
    assert again.exit_code == 0, again.output
