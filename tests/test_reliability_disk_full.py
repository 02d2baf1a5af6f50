"""A checkpoint write that fails half-way leaves the previous checkpoint intact and says so.

Two real failures, not mocks of prunecli code: the process file-size limit (RLIMIT_FSIZE makes the
kernel refuse the write with EFBIG, no root needed) in a subprocess, and a full disk during
``prunecli run`` (os-level ENOSPC injected under the checkpoint writer), after which the run is
resumed. Mocked ENOSPC/EDQUOT/EACCES/EROFS cases are in test_checkpoint_io.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from prunecli.checkpoint import load_checkpoint

_FSIZE_SCRIPT = textwrap.dedent(
    """
    import json, resource, signal, sys
    import torch
    from prunecli.checkpoint import build_checkpoint, save_checkpoint
    from prunecli.errors import CheckpointError

    target = sys.argv[1]
    small = build_checkpoint(state_dict={"w": torch.ones(10)}, epoch=0)
    save_checkpoint(target, small)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    limit = 64 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    big = build_checkpoint(state_dict={"w": torch.ones(100_000)}, epoch=1)
    try:
        save_checkpoint(target, big)
    except CheckpointError as exc:
        print(json.dumps({"error": exc.render(), "kind": type(exc).__name__}))
    else:
        print(json.dumps({"error": None}))
    """
)


def test_file_size_limit_during_write_keeps_previous_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    done = subprocess.run(
        [sys.executable, "-c", _FSIZE_SCRIPT, str(target)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["error"] is not None, "the oversized write should have failed"
    assert "file too large" in result["error"]
    assert f"the previous checkpoint {target} is intact" in result["error"]
    previous = load_checkpoint(target)
    assert previous["epoch"] == 0 and previous["state_dict"]["w"].numel() == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


_ENOSPC_RUN = textwrap.dedent(
    """
    import errno, os, sys
    import prunecli.checkpoint.atomic as atomic

    saves = {"n": 0}
    real_atomic_write = atomic.atomic_write

    def counting_atomic_write(path, write, **options):
        saves["n"] += str(path).endswith(".pt")  # checkpoint saves only, not the run directory's text files
        return real_atomic_write(path, write, **options)

    real_sink_write = atomic._FdSink.write

    def full_disk(self, data):
        if saves["n"] >= int(os.environ["FAIL_FROM_SAVE"]):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_sink_write(self, data)

    atomic.atomic_write = counting_atomic_write
    atomic._FdSink.write = full_disk
    import prunecli.checkpoint.io as checkpoint_io
    checkpoint_io.atomic_write = counting_atomic_write
    from prunecli.cli.main import main
    sys.argv = ["prunecli", *sys.argv[1:]]
    main()
    """
)


@pytest.mark.slow
def test_full_disk_during_run_then_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        "run", "--model", "resnet_digits", "--dataset", "digits", "--epochs", "3", "--batch-size", "16",
        "--max-steps-per-epoch", "2", "--max-eval-batches", "1", "--seed", "3", "--device", "cpu",
        "--quiet", "--set", "compact=false", "-o", str(out),
    ]  # fmt: skip
    env = {**os.environ, "FAIL_FROM_SAVE": "3", "COLUMNS": "400"}
    done = subprocess.run(
        [sys.executable, "-c", _ENOSPC_RUN, *args], capture_output=True, text=True, timeout=600, env=env
    )
    if done.returncode == 4:
        pytest.skip(f"prunecli run is not complete yet: {done.stderr.strip()[:300]}")
    message = done.stderr.replace("\n", "")
    assert done.returncode == 2, done.stderr
    assert "no space left on device while writing" in message
    assert f"the previous checkpoint {out / 'checkpoint.pt'} is intact" in message
    assert "Traceback" not in done.stderr
    intact = load_checkpoint(out / "checkpoint.pt")
    assert intact["epoch"] == 0  # saves: before epoch 0 (-1), after epoch 0, then the failing one
    assert not list(out.glob(".checkpoint.pt.*.tmp"))
    resumed = subprocess.run(
        [sys.executable, "-m", "prunecli", "run", "--resume", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 2
