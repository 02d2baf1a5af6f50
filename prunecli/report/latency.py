"""Inference latency: the median of repeated timed forward passes after a warm-up.

The median (not the mean) is reported because shared machines produce occasional slow
outliers; warm-up runs absorb one-off costs (allocator growth, kernel selection, lazy init).
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn

from prunecli.devices import resolve_device
from prunecli.errors import PruneCliError


@dataclass
class LatencyResult:
    median_ms: float
    min_ms: float
    max_ms: float
    runs: int
    warmup: int
    batch_size: int
    threads: int | None
    device: str

    def as_dict(self) -> dict:
        return asdict(self)


@contextmanager
def _threads(n: int | None):
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def measure_latency(
    model: nn.Module,
    sample_shape: tuple[int, ...],
    *,
    batch_size: int = 1,
    runs: int = 20,
    warmup: int = 3,
    threads: int | None = None,
    device: str = "cpu",
) -> LatencyResult:
    """Time ``runs`` forward passes of a random batch of shape ``(batch_size, *sample_shape)``."""
    if runs < 1 or warmup < 0 or batch_size < 1:
        raise PruneCliError(
            f"latency needs runs >= 1, warmup >= 0, batch size >= 1 (got {runs}, {warmup}, {batch_size})",
            hint="pass positive --latency-runs and --batch-size",
        )
    dev = resolve_device(device)
    was_training = model.training
    original = next(model.parameters(), torch.empty(0)).device
    model.eval().to(dev)
    x = torch.randn(batch_size, *sample_shape, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times: list[float] = []
    try:
        with _threads(threads), torch.inference_mode():
            for _ in range(warmup):
                model(x)
            sync()
            for _ in range(runs):
                start = time.perf_counter()
                model(x)
                sync()
                times.append((time.perf_counter() - start) * 1000.0)
    finally:
        model.to(original).train(was_training)
    return LatencyResult(
        median_ms=statistics.median(times),
        min_ms=min(times),
        max_ms=max(times),
        runs=runs,
        warmup=warmup,
        batch_size=batch_size,
        threads=threads,
        device=str(dev),
    )
