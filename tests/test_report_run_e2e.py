"""End to end: a short quickstart run, then `prunecli report` on its directory (slow)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from prunecli.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "docs" / "report-schema.json").read_text())


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("e2e") / "run"
    result = CliRunner().invoke(
        cli,
        ["run", str(ROOT / "schedules" / "quickstart.yaml"), "-o", str(out), "-q", "--epochs", "14",
         "--max-steps-per-epoch", "2", "--max-eval-batches", "1"],
    )  # fmt: skip
    if result.exit_code != 0:
        pytest.skip(f"prunecli run failed (exit {result.exit_code}): {result.output[-500:]}")
    return out


@pytest.mark.slow
def test_report_of_a_thinned_run(run_dir, tmp_path):
    html = tmp_path / "r.html"
    result = CliRunner().invoke(
        cli,
        ["report", str(run_dir), "--json", "--html", str(html), "--latency-runs", "2", "--threads", "1",
         "--fail-if", "macs_ratio > 0.9"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["source"]["checkpoint"].endswith("compact.pt")
    # the thinned model is smaller and its MACs are those of its own layers
    assert doc["params_ratio"] < 1 and doc["macs_ratio"] < 1
    assert doc["headline"]["compressed"]["macs"] == sum(r["macs"] for r in doc["compute"])
    assert doc["headline"]["dense"]["macs"] == 2116224  # resnet_digits, see docs/models.md
    assert len(doc["history"]) == 14
    assert doc["top1_delta"] is not None
    assert {c["pruner"] for c in doc["schedule"]["agp"]} == {
        "block_inner_pruner", "stage1_add_pruner", "stage2_add_pruner",
    }  # fmt: skip
    page = html.read_text()
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 4
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)


@pytest.mark.slow
def test_gate_on_a_real_run_fails(run_dir):
    result = CliRunner().invoke(
        cli, ["report", str(run_dir), "--no-latency", "--fail-if", "macs_ratio > 0.1"]
    )
    assert result.exit_code == 1
    assert "macs_ratio > 0.1" in result.stderr and "actual macs_ratio" in result.stderr
