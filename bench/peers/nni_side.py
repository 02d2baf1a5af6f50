"""NNI runs in its own environment (its pins would disturb ours); this side calls it as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from bench.results import NOT_INSTALLED, Unavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
#: the interpreter of the NNI environment; see docs/benchmarks.md for how it was made
PYTHON_ENV = "BENCH_NNI_PYTHON"
DEFAULT_PYTHON = REPO_ROOT.parent / "nni-venv" / "bin" / "python"


def python() -> Path:
    path = Path(os.environ.get(PYTHON_ENV, DEFAULT_PYTHON))
    if not path.exists():
        raise Unavailable(f"{NOT_INSTALLED} (no NNI environment at {path}; set {PYTHON_ENV})")
    return path


def version() -> str | None:
    try:
        out = subprocess.run(
            [str(python()), "-c", "import importlib.metadata as m; print(m.version('nni'))"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (Unavailable, subprocess.SubprocessError, OSError):
        return None
    return out.stdout.strip() or None


def prune(
    model: str, side: int, ratio: float, *, threads: int, probe_default: bool, timeout: float = 600
) -> dict:
    """One dependency-aware L1 prune + ModelSpeedup in NNI's environment; raises with NNI's error."""
    cmd = [
        str(python()),
        "-m",
        "bench.peers.nni_worker",
        model,
        str(side),
        str(ratio),
        "--threads",
        str(threads),
    ]
    if probe_default:
        cmd.append("--probe-default")
    return call(cmd, timeout)


def call(cmd: list[str], timeout: float) -> dict:
    """Run a worker in NNI's environment; its last stdout line is JSON; raises with NNI's last error."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO_ROOT)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"NNI did not finish within {timeout:.0f} s") from exc
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        raise RuntimeError(lines[-1] if lines else f"exit status {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def train_pruned(
    kind: str, plan: str, seeds: list[int], *, threads: int, timeout: float, ratio: float | None = None
) -> dict:
    """The engine accuracy rows of NNI's ``kind`` pruner (see :mod:`bench.peers.nni_engine`);
    ``ratio`` fixes the channel ratio (default: the one removing half the MACs, by bisection)."""
    cmd = [str(python()), "-m", "bench.peers.nni_engine", kind, "--plan", plan]
    cmd += ["--seeds", ",".join(map(str, seeds)), "--threads", str(threads)]
    if ratio is not None:
        cmd += ["--ratio", str(ratio)]
    return call(cmd, timeout)
