"""The embedded quickstart: `prunecli run schedules/quickstart.yaml` with no other argument."""

import json
import os

import pytest
from click.testing import CliRunner

from prunecli.cli.main import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_quickstart_reaches_95_percent_with_40_percent_fewer_macs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default run directory lands under ./runs
    result = CliRunner().invoke(cli, ["run", os.path.join(REPO, "schedules", "quickstart.yaml")])
    assert result.exit_code == 0, result.output
    (run_dir,) = list((tmp_path / "runs").iterdir())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    dense_macs, final = rows[0]["macs"], rows[-1]
    assert dense_macs == 2_116_224  # resnet_digits, Distiller's MAC definition
    assert 1 - final["macs"] / dense_macs >= 0.40
    assert final["top1"] >= 0.95
    report = json.loads((run_dir / "report.json").read_text())
    assert report["macs_ratio"] <= 0.60
    assert "top-1 before pruning" in result.output
    test_top1 = float(result.output.split("at the end: ")[1].split("%")[0]) / 100
    assert test_top1 >= 0.95
