"""``prunecli run`` / ``validate`` on iterative schedules: refusals before training (exit 2, with
file:line:column), the documented digits command, and a SIGKILLed run resumed to the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from prunecli.cli.main import cli
from prunecli.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
TWO_CONV = "tests.support.iterative:TwoConv"
SCHEDULE = """\
version: 1
iterative:
  generator: {generator}
  iterations: {iterations}
  budget: {budget}
  pruner: {{target: filters, metric: l1}}
  pretrain_epochs: 1
  finetune_epochs: 1
{extra}"""


def write(tmp_path: Path, *, generator="agp", iterations=2, budget="macs <= 0.5", extra="") -> Path:
    path = tmp_path / "iterative.yaml"
    text = SCHEDULE.format(generator=generator, iterations=iterations, budget=budget, extra=extra)
    path.write_text(text, encoding="utf-8")
    return path


class Outcome:
    """Exit code and output with rich's line wrapping undone (it breaks lines at the console width)."""

    def __init__(self, exit_code: int, output: str) -> None:
        self.exit_code, self.output = exit_code, "".join(output.splitlines())


def run(*args: str) -> Outcome:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return Outcome(result.exit_code, result.output)


def tiny_run(schedule: Path, out: Path, *more: str):
    return run(
        "run", str(schedule), "-o", str(out), "--model", TWO_CONV, "--dataset", "digits",
        "--max-steps-per-epoch", "2", "--max-eval-batches", "1", "--device", "cpu", "--quiet", *more,
    )  # fmt: skip


def test_a_budget_no_allocation_can_meet_is_refused_before_training(tmp_path):
    schedule = write(tmp_path, budget="macs <= 0.01")
    out = tmp_path / "run"
    result = tiny_run(schedule, out)
    assert result.exit_code == 2
    # every filter layer at 0.9: (64*1*9 + 64*1*1*9 + 1*10) / 63460 of the MACs stay
    assert f"{(576 + 576 + 10) / 63460:.4f}" in result.output
    assert f"{schedule}:5:11" in result.output  # the budget's value
    assert "max_sparsity_per_layer" in result.output
    assert not out.exists()  # refused before the run directory (and any training) existed


def test_validate_with_a_model_checks_the_budget_s_reach(tmp_path):
    schedule = write(tmp_path, budget="macs <= 0.01")
    result = run("validate", str(schedule), "--model", TWO_CONV, "--dataset", "digits")
    assert result.exit_code == 2
    assert f"{schedule}:5:11" in result.output and f"{(576 + 576 + 10) / 63460:.4f}" in result.output
    result = run("validate", str(write(tmp_path)), "--model", TWO_CONV, "--dataset", "digits")
    assert result.exit_code == 0
    assert f"keeps {(576 + 576 + 10) / 63460:.4f} of the dense macs" in result.output


def test_plan_lists_the_goal_of_every_iteration(tmp_path):
    result = CliRunner().invoke(
        cli, ["plan", str(write(tmp_path, iterations=3, budget="params <= 0.4")), "--json"]
    )
    assert result.exit_code == 0
    plan = json.loads(result.output)["plan"]
    # AGP, T = 3, s = 0.6: keep 1 - 0.6 (1 - (1 - i/3)^3)
    goals = [float(row["goal"].split("<=")[1]) for row in plan]
    assert goals == pytest.approx([1 - 0.6 * (1 - (1 - i / 3) ** 3) for i in (1, 2, 3)], abs=1e-6)
    assert {row["start_from"] for row in plan} == {"previous"}


def test_unknown_budget_metric_and_bad_iteration_count_are_located(tmp_path):
    schedule = write(tmp_path, iterations=0, budget="mac <= 0.4")
    result = run("validate", str(schedule))
    assert result.exit_code == 2
    assert f"{schedule}:4:15: iterations must be a positive whole number, got 0" in result.output
    assert f"{schedule}:5:11: unknown budget metric 'mac'" in result.output
    assert "did you mean 'macs'?" in result.output


def test_command_line_overrides_are_checked_like_the_file(tmp_path):
    schedule = write(tmp_path)
    result = tiny_run(schedule, tmp_path / "a", "--iterations", "-1")
    assert result.exit_code == 2 and "<command line>" in result.output and "positive" in result.output
    result = tiny_run(schedule, tmp_path / "b", "--budget", "latency_ms <= 3")
    assert result.exit_code == 2
    assert "generator agp steers weights, params, macs budgets, not latency_ms" in result.output


def test_latency_budget_without_a_usable_device_is_refused(tmp_path):
    schedule = write(tmp_path, extra="  latency: {device: cuda:99}\n")
    result = tiny_run(schedule, tmp_path / "run")
    assert result.exit_code == 2
    assert "latency cannot be measured" in result.output
    assert f"{schedule}:9:12" in result.output  # the latency value


def test_unknown_generator_suggests_the_near_name(tmp_path):
    result = run("validate", str(write(tmp_path, generator="lotery_ticket")))
    assert result.exit_code == 2
    assert "unknown generator 'lotery_ticket' (did you mean 'lottery_ticket'?)" in result.output


# ------------------------------------------------------------------------------ end to end

DOCUMENTED = ["prunecli", "run", "schedules/iterative_digits.yaml"]


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO) + (os.pathsep + path if path else ""),
    }


@pytest.mark.slow
def test_the_documented_command_gives_a_model_within_the_mac_budget_and_a_pareto_plot(tmp_path):
    docs = (REPO / "docs" / "iterative.md").read_text(encoding="utf-8")
    assert " ".join(DOCUMENTED) in docs
    out = tmp_path / "run"
    subprocess.run([*DOCUMENTED, "-o", str(out)], cwd=REPO, env=_env(), check=True, capture_output=True)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["source"]["checkpoint"].endswith("best.pt")
    assert report["macs_ratio"] <= 0.25
    assert report["top1"] >= 0.9
    table = report["iterative"]
    assert table["budget"] == "macs <= 0.25" and table["best"] is not None
    assert table["iterations"][table["best"]]["meets_budget"]
    assert "Accuracy vs cost of every iteration (Pareto front)" in (out / "report.html").read_text()


def _command(schedule: Path, out: Path) -> list[str]:
    return [
        "prunecli", "run", str(schedule), "-o", str(out), "--model", "resnet_digits", "--dataset",
        "digits", "--set", "model_args.width=8", "--max-steps-per-epoch", "3", "--max-eval-batches",
        "2", "--device", "cpu", "--threads", "1", "--quiet",
    ]  # fmt: skip


@pytest.mark.slow
def test_a_run_killed_after_an_iteration_resumes_to_the_uninterrupted_result(tmp_path):
    schedule = write(tmp_path, iterations=3, budget="macs <= 0.4")
    reference = tmp_path / "reference"
    subprocess.run(_command(schedule, reference), env=_env(), check=True, capture_output=True)

    out, signal_file = tmp_path / "killed", tmp_path / "paused"
    env = {
        **_env(),
        # the 3rd state write: after iteration 1 (the first one is the search's start)
        "PRUNECLI_TEST_PAUSE_AT": "iteration_saved:3",
        "PRUNECLI_TEST_PAUSE_SIGNAL": str(signal_file),
    }
    process = subprocess.Popen(
        _command(schedule, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not signal_file.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert signal_file.exists(), "the run never reached the pause point"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    run_dir = RunDir(out)
    assert len(run_dir.read_iterative_state()["scheduler"]["results"]) == 2
    assert not run_dir.iteration(2).exists()
    before = run_dir.iteration_checkpoint(1).read_bytes()

    subprocess.run(
        ["prunecli", "run", "--resume", str(out), "--quiet"], env=_env(), check=True, capture_output=True
    )
    assert run_dir.iteration_checkpoint(1).read_bytes() == before  # finished iterations are kept
    ours = run_dir.read_iterations()["iterations"]
    theirs = RunDir(reference).read_iterations()["iterations"]
    for key in ("score", "weights", "params", "macs", "meets_budget", "levels"):
        assert [r[key] for r in ours] == [r[key] for r in theirs], key
    assert (out / "best.pt").is_file()
