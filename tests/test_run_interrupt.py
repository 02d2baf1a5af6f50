"""A real Ctrl-C (SIGINT) to a `prunecli run` process, then --resume: same weights as no interruption."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from support.runs import RUN_SCHEDULE  # noqa: E402

from prunecli.checkpoint import load_checkpoint  # noqa: E402

pytestmark = pytest.mark.slow

STEPS = 20  # training steps per epoch
ARGS = ["--model", "resnet_digits", "--set", "model_args={width: 8}", "--epochs", "6", "-b", "16",
        "--max-steps-per-epoch", str(STEPS), "--max-eval-batches", "2", "--device", "cpu", "--auto-dependency",
        "--quiet", "--threads", "1"]  # fmt: skip


def _default_sigint() -> None:
    # A shell starts background jobs with SIGINT ignored, and Python then keeps it ignored; restore
    # the default so the child turns Ctrl-C into KeyboardInterrupt however the test suite was started.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def prunecli(*args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "prunecli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
        **kwargs,
    )


def test_sigint_then_resume_equals_uninterrupted(tmp_path):
    schedule = tmp_path / "tiny.yaml"
    schedule.write_text(RUN_SCHEDULE)
    whole = prunecli("run", str(schedule), *ARGS, "--out-dir", str(tmp_path / "whole"))
    assert whole.wait(timeout=300) == 0, whole.stderr.read()

    # The run pauses at a fixed training step (the test hook of prunecli.checkpoint.testhooks) and
    # says so through a file, so Ctrl-C always lands mid-epoch 2 however slow the machine is; the
    # pause lasts the hook's default 60 s, after which a run that deferred the signal stops by itself.
    run_dir = tmp_path / "part"
    paused = tmp_path / "paused"
    hook = {
        "PRUNECLI_TEST_PAUSE_AT": f"train_step_rank0:{2 * STEPS + 5}",
        "PRUNECLI_TEST_PAUSE_SIGNAL": str(paused),
    }
    part = prunecli("run", str(schedule), *ARGS, "--out-dir", str(run_dir), env={**os.environ, **hook})
    while not paused.exists():
        assert part.poll() is None, f"the run ended before its pause point: {part.stderr.read()}"
        time.sleep(0.05)
    part.send_signal(signal.SIGINT)
    _, err = part.communicate(timeout=120)
    assert part.returncode == 130, err
    assert f"--resume {run_dir}" in " ".join(err.split())  # the hint may be wrapped
    resumed = prunecli("run", "--resume", str(run_dir), "--quiet", env={**os.environ, "COLUMNS": "200"})
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()

    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["state_dict"]
    b = load_checkpoint(run_dir / "checkpoint.pt")["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
