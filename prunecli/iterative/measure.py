"""What a model costs, as ratios to the dense model (and measured latency when asked).

MACs follow :mod:`prunecli.report.compute` (Distiller's definition); a masked, unthinned layer
counts only its non-zero weights' MACs. Latency is :func:`prunecli.report.latency.measure_latency`'s
median, with the batch size, threads and device recorded next to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from prunecli.iterative.pruning import DenseCounts
from prunecli.iterative.task import Measurements


@dataclass(frozen=True)
class LatencyOptions:
    """How latency is measured: one timed forward pass of ``batch_size`` samples, median of ``runs``."""

    batch_size: int = 1
    runs: int = 20
    warmup: int = 3
    threads: int | None = None
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_model(
    model: nn.Module,
    example_input: Any,
    dense: DenseCounts,
    weights: Sequence[str],
    latency: LatencyOptions | None = None,
) -> Measurements:
    """Weights, parameters and MACs left (ratios to ``dense``); latency in ms when ``latency`` is given."""
    from prunecli.report.compute import compute_summary

    params = dict(model.named_parameters())
    live_weights = sum(int((params[w] != 0).sum()) for w in weights if w in params)
    nnz = sum(int((p.detach() != 0).sum()) for p in model.parameters())
    macs = sum(layer.effective_macs for layer in compute_summary(model, example_input))
    counts: dict[str, Any] = {
        "weights": live_weights,
        "params": nnz,
        "macs": macs,
        "dense_weights": dense.weights,
        "dense_params": dense.params,
        "dense_macs": dense.macs,
    }
    latency_ms = None
    if latency is not None:
        from prunecli.report.latency import measure_latency

        timed = measure_latency(
            model,
            tuple(example_input.shape[1:]),
            batch_size=latency.batch_size,
            runs=latency.runs,
            warmup=latency.warmup,
            threads=latency.threads,
            device=latency.device,
        )
        latency_ms = timed.median_ms
        counts["latency"] = timed.as_dict()
    return Measurements(
        weights=live_weights / dense.weights if dense.weights else 1.0,
        params=nnz / dense.params if dense.params else 1.0,
        macs=macs / dense.macs if dense.macs else 1.0,
        latency_ms=latency_ms,
        counts=counts,
    )
