"""What ``prunecli run`` does differently on several processes, in one place the app asks.

:class:`Parallel` answers the app's questions -- which device, which loaders, which object to call
for the training forward pass, whether this process writes files, which options the loop gets --
for a single process and for a torchrun job alike, so the app keeps one code path:

* rank 0 alone writes the run directory, checkpoints, metrics, the log, the report and the
  progress display; the others compute the same things and stay silent;
* ``batch_size`` is per process; the global batch (``processes x batch_size``) is printed and saved,
  and a resumed run keeps it when the number of processes changes;
* after every epoch the pruning masks are compared across processes (a digest each), and after a
  thinning the thinned model is; any difference stops the run (:class:`ReplicaMismatch`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from prunecli.checkpoint.testhooks import diverge
from prunecli.errors import ConfigError, PruneCliError
from prunecli.rundir import RunDir

from .distributed import (
    ENV_LAUNCH_INFO,
    ENV_WORLD,
    Replica,
    World,
    is_main_process,
    tensor_digests,
    under_launcher,
)
from .distributed_batchnorm import synchronise_batchnorm
from .precision import Precision
from .progress import Reporter

log = logging.getLogger("prunecli.run")

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class PeerLost(PruneCliError):
    """A collective operation failed because another process of the job stopped."""

    exit_code = 5
    kind = "distributed job stopped"


class SilentReporter(Reporter):
    """The reporter of ranks other than 0: rank 0 alone shows progress, lines and warnings."""

    def info(self, message: str) -> None:
        return None

    def warn(self, message: str) -> None:
        return None

    @contextlib.contextmanager
    def epoch_progress(self, epoch: int, steps: int) -> Iterator[Any]:
        yield None

    def epoch_line(self, row: dict[str, Any]) -> None:
        return None

    def summary(self, result: Any) -> None:
        return None


def reporter_for_this_process(reporter: Reporter) -> Reporter:
    if not is_main_process():
        return SilentReporter(reporter.console, quiet=True)
    return reporter


def world_size_from_environment() -> int:
    return int(os.environ.get(ENV_WORLD, "1") or 1) if under_launcher() else 1


def resumed_batch_size(payload: dict[str, Any], config: Any, path: Path) -> int:
    """The per-process batch that keeps the saved run's global batch on this many processes."""
    saved_processes = int((payload.get("extras") or {}).get("processes") or 1)
    processes = world_size_from_environment()
    global_batch = saved_processes * int(config.batch_size)
    if processes == saved_processes:
        return int(config.batch_size)
    if global_batch % processes:
        raise ConfigError(
            f"the run in {path.parent} trained with a global batch of {global_batch} "
            f"({saved_processes} process(es) x {config.batch_size}), which {processes} processes cannot share",
            hint="resume with a number of processes that divides the global batch "
            "(prunecli run --resume DIR --nproc-per-node N)",
        )
    return global_batch // processes


def job_failures(function: F) -> F:
    """Turn a collective that failed because a peer died into one clear :class:`PeerLost` error."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except torch.distributed.DistError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PeerLost(
                f"rank {os.environ.get('RANK', '?')} lost contact with another process of the job ({first})",
                hint="the launcher's message names the process that stopped first; the run directory's "
                "checkpoint.pt holds the last completed epoch: continue with prunecli run --resume RUN_DIR",
            ) from None

    return wrapper  # type: ignore[return-value]


class Parallel:
    """One process, or this process's part of a torchrun job (see the module docstring)."""

    def __init__(
        self,
        world: World | None = None,
        device: torch.device | None = None,
        *,
        amp: str | None = None,
        channels_last: bool = False,
        sync_batchnorm: bool = False,
    ) -> None:
        self.world = world or World()
        self.device = device or torch.device("cpu")
        self.precision = Precision(amp, self.device)
        self.channels_last = channels_last
        self.sync_batchnorm = sync_batchnorm
        self.global_batch: int | None = None
        self.seed = 0
        self.max_eval_batches: int | None = None
        self.replica: Any = None

    @classmethod
    def join(cls, config: Any, device: torch.device, reporter: Reporter) -> Parallel:
        """Join torchrun's process group when there is one; print the batch semantics on rank 0."""
        world = World.from_environment(device)
        parallel = cls(
            world,
            world.local_device(device),
            amp=config.amp,
            channels_last=config.channels_last,
            sync_batchnorm=config.sync_batchnorm,
        )
        parallel.global_batch = config.batch_size * world.size
        parallel.seed, parallel.max_eval_batches = config.seed, config.max_eval_batches
        if world.distributed:
            reporter.info(
                f"{world.size} processes x batch {config.batch_size} per process = global batch "
                f"{parallel.global_batch} (backend {torch.distributed.get_backend()})"
            )
        return parallel

    @property
    def is_main(self) -> bool:
        return self.world.is_main

    def on_main(self, make: Callable[[], T]) -> T:
        """Run ``make`` on rank 0 only and hand its result to every process."""
        return self.world.from_main(make)

    # ------------------------------------------------------------------------------- data, model
    def loaders(self, train: Any, val: Any, test: Any) -> tuple[Any, Any, Any]:
        """Training shuffled by a DistributedSampler; validation and test cut into unpadded shares."""
        world, limit = self.world, self.max_eval_batches
        return (
            world.train_loader(train, self.seed),
            world.eval_loader(val, limit),
            world.eval_loader(test, limit),
        )

    def place(self, model: nn.Module) -> None:
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)

    def replicate(self, model: nn.Module, scheduler: Any) -> Any:
        """The object the training loop calls; on several processes a DDP replica kept after thinning."""
        self._refuse_scaled_gradient_ranking(scheduler)
        if not self.world.distributed:
            return model
        if self.sync_batchnorm:
            synchronise_batchnorm(model)
        self.replica = self.world.replicate(model, self.device)
        listeners = getattr(scheduler, "thinning_listeners", None)
        if listeners is not None:
            listeners.append(self._after_thinning)
        return self.replica

    def _refuse_scaled_gradient_ranking(self, scheduler: Any) -> None:
        """fp16's scaled (and, on skipped steps, infinite) gradients would poison Taylor ranking sums."""
        from prunecli.engine.metrics import GradientRankingMetric

        if self.precision.scaler is None:
            return
        for key, policy in getattr(scheduler, "policy_order", []):
            if isinstance(getattr(getattr(policy, "pruner", None), "metric", None), GradientRankingMetric):
                raise ConfigError(
                    f"--amp fp16 cannot drive the gradient-ranked pruner of policy '{key}': its hooks "
                    "see the scaled gradients (infinite on the steps the scaler skips)",
                    hint="use --amp bf16 (no gradient scaling) or train this schedule without --amp",
                )

    def _after_thinning(self, recipe: Any) -> None:
        """Every process thinned its own copy: check the copies are equal, then rebuild DDP."""
        assert isinstance(self.replica, Replica)
        self.world.verify_identical("thinned models", tensor_digests(self.replica.module.state_dict()))
        self.replica.rewrap()

    def step_options(self) -> dict[str, Any]:
        """Keyword options of ``train_epoch`` and ``evaluate``."""
        return {"precision": self.precision, "channels_last": self.channels_last, "reduce": self.world.sum}

    def after_training(self, model: nn.Module) -> None:
        self.world.sync_buffers(model)

    def verify_masks(self, scheduler: Any, epoch: int) -> None:
        if self.world.distributed:
            diverge(scheduler.masks_view, self.world.rank, epoch)
            self.world.verify_identical("pruning masks", tensor_digests(scheduler.masks), epoch=epoch)

    # ------------------------------------------------------------------------------- files
    def checkpoint_extras(self) -> dict[str, Any]:
        return {
            "processes": self.world.size,
            "global_batch": self.global_batch,
            "precision": self.precision.state_dict(),
        }

    def attach_log(self, run_dir: RunDir) -> logging.Handler | None:
        """Rank 0 logs to ``run.log`` (and tells the launcher where the run directory is)."""
        if not self.is_main:
            return None
        info = os.environ.get(ENV_LAUNCH_INFO)
        if info:
            Path(info).write_text(str(run_dir.path), encoding="utf-8")
        return run_dir.attach_log()

    def close(self, *, finished: bool = False) -> None:
        """Leave the job. After a run every process finished (``finished``), the processes first wait
        for each other: a rank tearing its group down while another still writes the report (only
        rank 0 does) could abort in gloo's teardown. After an error no rank waits (a peer may be gone)."""
        if finished:
            self.world.barrier()
        self.world.close()
