"""Every script in examples/ runs on tiny settings and reaches the outcome it promises.

The model is examples/own_model/net.py:Net (width 16) on the digits; its schedule prunes half the
filters of both convolutions, so the expected sizes follow from the layer shapes alone.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from prunecli.checkpoint import load_checkpoint, load_model
from prunecli.cli.main import cli

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
MODEL = "examples/own_model/net.py:Net"
SCHEDULE = "examples/own_model/schedule.yaml"
TINY = ["--max-steps-per-epoch", "2", "--max-eval-batches", "1", "--quiet"]


def net_params(width: int, classes: int = 10) -> int:
    """Parameters of Net with ``width`` and ``2 * width`` filters (3x3 convs without bias, BN, fc)."""
    conv1, conv2 = 1 * width * 9, width * 2 * width * 9
    bn = 2 * width + 2 * (2 * width)
    return conv1 + conv2 + bn + 2 * width * classes + classes


DENSE, HALF = net_params(16), net_params(8)  # 5,178 and 1,442


def _env() -> dict[str, str]:
    """The scripts call `prunecli` and `python`: the ones of this interpreter, this checkout's code."""
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO) + (os.pathsep + path if path else ""),
        "COLUMNS": "200",  # rich wraps terminal output at this width
    }


def _bash(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", *args], cwd=REPO, capture_output=True, text=True, env={**_env(), **env}, timeout=600
    )


@pytest.fixture(scope="module")
def masked_checkpoint(tmp_path_factory) -> Path:
    """A run stopped before its thinning epoch: checkpoint.pt holds the zeroed filters in place."""
    out = tmp_path_factory.mktemp("masked") / "run"
    args = ["run", SCHEDULE, "--model", MODEL, "--epochs", "8", "--auto-dependency",
            "--set", "compact=false", "--out-dir", str(out), *TINY]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out / "checkpoint.pt"


def test_own_model_script_prunes_and_thins_to_half_the_filters(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = _bash("examples/own_model/run.sh", *TINY, OUT=str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every name matches model examples/own_model/net.py:Net" in " ".join(done.stdout.split())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(14))
    # epoch 7: the last AGP step, 8 of 16 and 16 of 32 filters zeroed (3x3 kernels, 1 and 16 inputs)
    zeros = 8 * 1 * 9 + 16 * 16 * 9
    assert rows[7]["sparsity"] == pytest.approx(zeros / DENSE)
    assert rows[7]["params"] == DENSE
    # epoch 8: the FilterRemover removed them, with their BatchNorm channels and conv2's inputs
    assert rows[8]["params"] == rows[-1]["params"] == HALF
    model = load_model(out / "compact.pt", model=MODEL)
    assert model.conv1.weight.shape == (8, 1, 3, 3) and model.conv2.weight.shape == (16, 8, 3, 3)
    assert model.fc.weight.shape == (10, 16)


def test_thin_and_export_script_reaches_the_computed_size(masked_checkpoint: Path, tmp_path: Path) -> None:
    compact = tmp_path / "net.compact.pt"
    onnx = importlib.util.find_spec("onnxruntime") is not None  # the export extra
    fmt, suffix = ("onnx", ".onnx") if onnx else ("torchscript", ".ts")
    done = _bash(
        "examples/thin_and_export.sh", str(masked_checkpoint), MODEL, COMPACT=str(compact), FORMAT=fmt
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = " ".join(done.stdout.split())
    assert f"params {DENSE:,} -> {HALF:,}" in text
    assert f"Net, {HALF:,} parameters" in text
    assert compact.with_suffix(suffix).is_file() and f"Wrote {compact.with_suffix(suffix)}" in text
    # the compact model computes what the masked model computed
    masked = load_model(masked_checkpoint, model=MODEL)
    thinned = load_model(compact, model=MODEL)
    assert sum(p.numel() for p in thinned.parameters()) == HALF
    x = torch.randn(5, 1, 8, 8)
    torch.testing.assert_close(thinned(x), masked(x), rtol=1e-4, atol=1e-5)
    assert load_checkpoint(compact)["recipe"] is not None


def test_thin_and_export_script_needs_a_checkpoint() -> None:
    done = _bash("examples/thin_and_export.sh")
    assert done.returncode != 0 and "usage: thin_and_export.sh CHECKPOINT" in done.stderr


def _gate(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "ci_gate.py"), *args],
        cwd=REPO, capture_output=True, text=True, env={**_env(), **env}, timeout=600,
    )  # fmt: skip


def test_ci_gate_script_exit_codes_follow_the_report(masked_checkpoint: Path, tmp_path: Path) -> None:
    compact = tmp_path / "compact.pt"
    thinned = CliRunner().invoke(cli, ["thin", str(masked_checkpoint), "--model", MODEL, "-o", str(compact)])
    assert thinned.exit_code == 0, thinned.output
    report = json.loads(
        CliRunner().invoke(cli, ["report", str(compact), "--model", MODEL, "--json", "--no-latency"]).stdout
    )
    macs_ratio = report["macs_ratio"]
    assert macs_ratio == pytest.approx(
        report["headline"]["compressed"]["macs"] / report["headline"]["dense"]["macs"]
    )

    summary_file = tmp_path / "summary.md"
    baseline = tmp_path / "baseline.json"
    met = _gate(str(compact), "--model", MODEL, "--max-macs-ratio", str(macs_ratio + 1e-6),
                "--save-report", str(baseline), GITHUB_STEP_SUMMARY=str(summary_file))  # fmt: skip
    assert met.returncode == 0, met.stdout + met.stderr
    assert "| ok | MACs / dense MACs |" in summary_file.read_text()
    assert json.loads(baseline.read_text())["headline"]["compressed"]["params"] == HALF

    missed = _gate(str(compact), "--model", MODEL, "--max-macs-ratio", str(macs_ratio - 1e-3))
    assert missed.returncode == 1 and "**missed** | MACs / dense MACs" in missed.stdout
    # the same threshold through prunecli's own gate gives the same verdict
    builtin = CliRunner().invoke(cli, ["report", str(compact), "--model", MODEL, "--no-latency", "--brief",
                                       "--fail-if", f"macs_ratio > {macs_ratio - 1e-3}"])  # fmt: skip
    assert builtin.exit_code == 1

    # against the compact baseline, the unthinned checkpoint has 3.9x the MACs: a regression
    regressed = _gate(str(masked_checkpoint), "--model", MODEL, "--baseline", str(baseline))
    assert regressed.returncode == 1 and "**missed** | MACs vs baseline" in regressed.stdout

    bad = _gate(str(tmp_path / "missing.pt"))
    assert bad.returncode == 2 and "no such checkpoint" in bad.stderr
    assert re.search(r"Traceback", bad.stderr) is None
