"""Several processes training one model: torchrun's environment, DistributedDataParallel, checks.

A run started by ``torchrun`` (or ``prunecli run --nproc-per-node N``, which starts torchrun's
launcher) finds ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in its environment and joins the process
group (gloo on CPU, NCCL on CUDA). Every process then builds the same model from the same seed,
wraps it in :class:`~torch.nn.parallel.DistributedDataParallel` for the forward/backward pass and
keeps the *unwrapped* module for everything else, so schedules, masks, checkpoints and thinning
see the parameter names of a single-process run.

Masks are computed on every process from identical weights (DDP all-reduces gradients, so every
optimizer step is the same everywhere); :meth:`World.verify_identical` compares digests of them
across processes after every epoch and stops the run with a clear error if they ever differ.
Without ``WORLD_SIZE`` > 1 the :class:`World` is a single process and every collective is the
identity, so the training code has one path.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from prunecli.errors import ConfigError, PruneCliError

T = TypeVar("T")

#: what torchrun puts into every worker's environment
ENV_RANK, ENV_WORLD, ENV_LOCAL_RANK = "RANK", "WORLD_SIZE", "LOCAL_RANK"

#: rank 0 writes the run directory's path here, so the launcher can name it if a process dies
ENV_LAUNCH_INFO = "PRUNECLI_LAUNCH_INFO"


class ReplicaMismatch(PruneCliError):
    """Processes that must hold identical state do not (masks, thinned model)."""

    exit_code = 4
    kind = "distributed state mismatch"


def under_launcher() -> bool:
    """True inside a worker that torchrun started (one process or more)."""
    return ENV_LOCAL_RANK in os.environ and ENV_WORLD in os.environ


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or a process that torchrun did not start."""
    return int(os.environ.get(ENV_RANK, "0") or 0) == 0


def first_mismatch(digests: Sequence[Any]) -> int | None:
    """The first rank whose digest differs from rank 0's, or ``None`` when all agree."""
    return next((rank for rank, digest in enumerate(digests) if digest != digests[0]), None)


def tensor_digests(tensors: Mapping[str, torch.Tensor | None]) -> dict[str, str]:
    """One SHA-256 per tensor over its shape, dtype and exact bytes (CPU, contiguous); ``None`` skipped.

    Per tensor, so that processes that disagree can be told which tensor they disagree on.
    """
    out: dict[str, str] = {}
    for name in sorted(tensors):
        tensor = tensors[name]
        if tensor is None:
            continue
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        h = hashlib.sha256(f"{tuple(tensor.shape)}:{data.dtype};".encode())
        h.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
        out[name] = h.hexdigest()
    return out


def differing_tensors(reference: Mapping[str, str], other: Mapping[str, str]) -> list[str]:
    """Names whose digest differs between two processes, or that only one of them holds."""
    return sorted(name for name in set(reference) | set(other) if reference.get(name) != other.get(name))


def mismatch_message(what: str, digests: Sequence[Mapping[str, str]], epoch: int | None = None) -> str:
    """Which ranks hold different ``what`` than rank 0, and in which tensors (the first few named)."""
    when = f" after epoch {epoch}" if epoch is not None else ""
    parts = []
    for rank, theirs in enumerate(digests):
        names = differing_tensors(digests[0], theirs)
        if names:
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            parts.append(f"rank {rank} differs from rank 0 in {', '.join(repr(n) for n in names[:3])}{more}")
    return f"the {what} differ between processes{when}: {'; '.join(parts)}; the processes no longer train one model"


@dataclass
class World:
    """This process's place in the job; a single-process world makes every collective a no-op."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    # -------------------------------------------------------------------------------- set-up
    @classmethod
    def from_environment(cls, device: torch.device) -> World:
        """Join torchrun's process group when there is more than one process; else a single world."""
        size = int(os.environ.get(ENV_WORLD, "1") or 1)
        if size <= 1 or not under_launcher():
            return cls()
        if not dist.is_available():
            raise ConfigError(
                "this torch build has no torch.distributed, so it cannot train on several processes",
                hint="install a torch build with distributed support, or run without torchrun",
            )
        world = cls(int(os.environ[ENV_RANK]), size, int(os.environ[ENV_LOCAL_RANK]))
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=timedelta(minutes=30))
        return world

    def local_device(self, device: torch.device) -> torch.device:
        """Each process of a CUDA job uses the GPU of its local rank."""
        if device.type != "cuda" or not self.distributed:
            return device
        index = self.local_rank
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"local rank {index} has no GPU: this machine has {torch.cuda.device_count()}",
                hint="start at most one process per GPU (torchrun --nproc-per-node)",
            )
        torch.cuda.set_device(index)
        return torch.device("cuda", index)

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    # -------------------------------------------------------------------------------- collectives
    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over processes (float64, so counts up to 2**53 stay exact)."""
        if not self.distributed:
            return [float(v) for v in values]
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(tensor)
        return tensor.cpu().tolist()

    def max(self, value: float) -> float:
        if not self.distributed:
            return value
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor.item())

    def from_main(self, make: Callable[[], T]) -> T:
        """``make()`` on rank 0, its (picklable) result on every process."""
        if not self.distributed:
            return make()
        box: list[Any] = [make() if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: T) -> list[T]:
        if not self.distributed:
            return [value]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def verify_identical(self, what: str, digests: Mapping[str, str], *, epoch: int | None = None) -> None:
        """Stop with :class:`ReplicaMismatch` unless every process has the same per-tensor ``digests``
        (:func:`tensor_digests`); the message names the ranks and the first differing tensors."""
        if not self.distributed:
            return
        everyone = self.gather(dict(digests))
        if first_mismatch(everyone) is None:
            return
        raise ReplicaMismatch(
            mismatch_message(what, everyone, epoch),
            hint="every process must run the same prunecli, torch and schedule with the same seed; "
            "a pruner drawing from a per-process random source causes this. checkpoint.pt keeps "
            "the last epoch that was saved before the divergence",
        )

    def sync_buffers(self, module: nn.Module) -> None:
        """Give every process rank 0's buffers (BatchNorm running statistics are updated locally)."""
        if not self.distributed:
            return
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)

    def _comm_device(self) -> torch.device:
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    # -------------------------------------------------------------------------------- data
    def train_loader(self, loader: DataLoader, seed: int) -> DataLoader:
        """The training loader with a :class:`DistributedSampler` (rank ``r`` gets positions ``r::size``)."""
        if not self.distributed:
            return loader
        generator = torch.Generator()
        sampler = EpochDistributedSampler(loader.dataset, self, seed=seed, generator=generator)
        return DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            sampler=sampler,
            generator=generator,
            num_workers=loader.num_workers,
            worker_init_fn=loader.worker_init_fn,
        )

    def eval_loader(self, loader: DataLoader, max_batches: int | None) -> DataLoader:
        """This process's contiguous share of an evaluation set, without padding.

        Every sample is evaluated by exactly one process (DistributedSampler would repeat some to
        even out the shares). ``max_batches`` cuts the *whole* set to the samples a single process
        with the global batch would see, so the reduced metrics equal a single-process run's.
        """
        if not self.distributed:
            return loader
        size = len(loader.dataset)
        if max_batches is not None and loader.batch_size:
            size = min(size, max_batches * loader.batch_size * self.size)
        start, stop = shard_bounds(size, self.size, self.rank)
        return DataLoader(
            Subset(loader.dataset, range(start, stop)),
            batch_size=loader.batch_size,
            shuffle=False,
            num_workers=loader.num_workers,
            worker_init_fn=loader.worker_init_fn,
        )

    # -------------------------------------------------------------------------------- model
    def replicate(self, module: nn.Module, device: torch.device) -> Any:
        """What the training loop calls: the module itself, or a DDP replica of it."""
        if not self.distributed:
            return module
        return Replica(module, device)


def shard_bounds(size: int, parts: int, index: int) -> tuple[int, int]:
    """``[start, stop)`` of part ``index`` when ``size`` items are cut into ``parts`` near-equal runs."""
    base, extra = divmod(size, parts)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


class EpochDistributedSampler(DistributedSampler):
    """torch's DistributedSampler whose epoch also reseeds the loader's generator (worker seeds).

    The order of epoch ``e`` is ``randperm(N)`` drawn from ``seed + e``, the same permutation a
    single-process run uses (:class:`prunecli.data.bundle.EpochSampler`), so the union of the
    processes' minibatches at step ``s`` is exactly the single-process minibatch ``s`` of the
    global batch size (when the global batch divides the training set).
    """

    def __init__(self, dataset: Dataset, world: World, seed: int, generator: torch.Generator) -> None:
        super().__init__(dataset, num_replicas=world.size, rank=world.rank, shuffle=True, seed=seed)
        self.generator = generator
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.generator.manual_seed((self.seed + epoch) * 1_000_003 + self.rank)


class Replica:
    """The training loop's view of a DDP-wrapped module; rebuilt after thinning changes its shapes.

    Calls go to the DDP wrapper (gradients are averaged across processes); parameters, modes and
    names are the unwrapped module's, so nothing downstream sees a ``module.`` prefix.
    """

    def __init__(self, module: nn.Module, device: torch.device) -> None:
        self.module = module
        self.device = device
        self.wrapped = self._wrap()

    def _wrap(self) -> nn.parallel.DistributedDataParallel:
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(self.module, device_ids=ids)

    def rewrap(self) -> None:
        """Thinning replaced the parameters' storage: DDP's gradient buckets must be rebuilt."""
        self.wrapped = self._wrap()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.wrapped(*args, **kwargs)

    def train(self, mode: bool = True) -> Replica:
        self.module.train(mode)
        return self

    def eval(self) -> Replica:
        return self.train(False)

    @property
    def training(self) -> bool:
        return self.module.training

    def named_parameters(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, nn.Parameter]]:
        return self.module.named_parameters(*args, **kwargs)

    def parameters(self, *args: Any, **kwargs: Any) -> Iterator[nn.Parameter]:
        return self.module.parameters(*args, **kwargs)
