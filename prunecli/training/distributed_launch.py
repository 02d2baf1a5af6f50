"""``prunecli run --nproc-per-node N``: start PyTorch's own launcher (torchrun) on this machine.

The same as ``torchrun --standalone --nproc-per-node N -m prunecli run ...``: torch's elastic agent
picks a free port for the c10d rendezvous, starts N workers, and stops all of them when one fails.
If a worker fails, the failure is reported in one paragraph naming the first rank that stopped (and
the signal that killed it), the run directory, and the command that resumes the run; the exit status
is that of the failed worker (128 + signal number when it was killed).
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path

from prunecli.errors import ConfigError, PruneCliError

from .distributed import ENV_LAUNCH_INFO, under_launcher

#: the option the shortcut removes from the command line it hands to every worker
OPTION = "--nproc-per-node"


class WorkerFailed(PruneCliError):
    """A worker process of a multi-process run stopped; all others were stopped with it."""

    kind = "worker failed"

    def __init__(self, message: str, *, exit_code: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code


def worker_arguments(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--nproc-per-node N`` / ``--nproc-per-node=N``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == OPTION:
            skip = True
            continue
        if arg.startswith(OPTION + "="):
            continue
        out.append(arg)
    return out


def launch(nproc: int, argv: Sequence[str], *, resume_dir: str | None = None) -> None:
    """Run ``python -m prunecli ARGV`` on ``nproc`` processes through torch.distributed.run."""
    if under_launcher():
        raise ConfigError(
            f"{OPTION} was given inside a process that torchrun already started",
            hint=f"drop {OPTION} from the command torchrun runs (torchrun's own --nproc-per-node sets it)",
        )
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(
        ["--standalone", "--nproc-per-node", str(nproc), "-m", "prunecli", *worker_arguments(argv)]
    )
    with tempfile.TemporaryDirectory(prefix="prunecli-launch-") as tmp:
        info = Path(tmp) / "run_dir"
        previous = os.environ.get(ENV_LAUNCH_INFO)
        os.environ[ENV_LAUNCH_INFO] = str(info)
        try:
            run(args)
        except ChildFailedError as exc:
            run_dir = info.read_text(encoding="utf-8").strip() if info.exists() else resume_dir
            raise _failure(exc, nproc, run_dir) from None
        finally:
            if previous is None:
                os.environ.pop(ENV_LAUNCH_INFO, None)
            else:
                os.environ[ENV_LAUNCH_INFO] = previous


def _failure(exc: object, nproc: int, run_dir: str | None) -> WorkerFailed:
    rank, failure = exc.get_first_failure()  # type: ignore[attr-defined]
    code = int(failure.exitcode)
    if code < 0:
        name = _signal_name(-code)
        what = f"was killed by {name}"
        exit_code = 128 - code
    else:
        what = f"exited with status {code}"
        exit_code = code
    where = (
        f"{run_dir}/checkpoint.pt holds the last completed epoch; continue with: "
        f"prunecli run --resume {run_dir} {OPTION} {nproc}"
        if run_dir
        else "no run directory had been created yet"
    )
    others = sorted(r for r in exc.failures if r != rank)  # type: ignore[attr-defined]
    also = f" (then rank(s) {', '.join(map(str, others))} stopped too)" if others else ""
    return WorkerFailed(
        f"rank {rank} (local rank {failure.local_rank}, pid {failure.pid}) {what}; the launcher stopped "
        f"the other processes{also}. {where}",
        exit_code=exit_code,
        hint="the rank's own error, if it printed one, is above; a process killed by SIGKILL usually ran "
        "out of memory (lower --batch-size) or was stopped by a scheduler",
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
