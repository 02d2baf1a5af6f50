"""What a model costs, as ratios to the dense model (and measured latency when asked).

MACs follow :mod:`prunecli.report.compute` (Distiller's definition); a masked, unthinned layer
counts only its non-zero weights' MACs. Latency is :func:`prunecli.report.latency.measure_latency`'s
median, with the batch size, threads and device recorded next to it.

A latency measurement on a shared machine carries noise of several per cent, so a result that
misses a ``latency_ms`` budget by at most :data:`LATENCY_RECHECK_MARGIN` is timed once more with
:data:`LATENCY_RECHECK_FACTOR` times the runs (:func:`recheck_latency`) and judged on the smaller
of the two medians: a single unlucky measurement should not disqualify a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from prunecli.iterative.pruning import DenseCounts
from prunecli.iterative.task import Budget, Measurements

#: a result over a ``latency_ms`` budget by at most this fraction of the bound is measured again
LATENCY_RECHECK_MARGIN = 0.15
#: the re-measurement takes this many times the configured runs
LATENCY_RECHECK_FACTOR = 3


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
        timed = _time(model, example_input, latency, latency.runs)
        latency_ms = timed.median_ms
        counts["latency"] = timed.as_dict()
    return Measurements(
        weights=live_weights / dense.weights if dense.weights else 1.0,
        params=nnz / dense.params if dense.params else 1.0,
        macs=macs / dense.macs if dense.macs else 1.0,
        latency_ms=latency_ms,
        counts=counts,
    )


def _time(model: nn.Module, example_input: Any, latency: LatencyOptions, runs: int) -> Any:
    """One :func:`prunecli.report.latency.measure_latency` call with ``latency``'s settings."""
    from prunecli.report import latency as timing

    return timing.measure_latency(
        model,
        tuple(example_input.shape[1:]),
        batch_size=latency.batch_size,
        runs=runs,
        warmup=latency.warmup,
        threads=latency.threads,
        device=latency.device,
    )


def recheck_latency(
    model: nn.Module,
    example_input: Any,
    measured: Measurements,
    budget: Budget | None,
    latency: LatencyOptions | None,
) -> dict[str, Any]:
    """Measure ``model`` again when ``measured`` misses a latency budget by a small margin.

    Within :data:`LATENCY_RECHECK_MARGIN` of the bound, the model is timed with
    :data:`LATENCY_RECHECK_FACTOR` times the runs and ``measured.latency_ms`` becomes the smaller
    median (the second timing goes to ``measured.counts["latency_recheck"]``). Returns the metrics
    recording both figures (empty when nothing was re-measured).
    """
    if budget is None or budget.metric != "latency_ms" or latency is None or measured.latency_ms is None:
        return {}
    first = float(measured.latency_ms)
    if not budget.value < first <= budget.value * (1 + LATENCY_RECHECK_MARGIN):
        return {}
    timed = _time(model, example_input, latency, latency.runs * LATENCY_RECHECK_FACTOR)
    measured.latency_ms = min(first, float(timed.median_ms))
    measured.counts["latency_recheck"] = timed.as_dict()
    return {"latency_ms_first": first, "latency_ms_recheck": float(timed.median_ms)}
