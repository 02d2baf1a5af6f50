"""A per-layer latency lookup table: measured once, summed to predict a pruned model's latency.

Measuring every proposal of a search end to end would cost more than the search itself, and
timing noise would drown the differences between neighbouring allocations. Instead each searched
convolution / linear layer is rebuilt alone (a convolution with the BatchNorm that normalises its
outputs, which shrinks with it) at a grid of kept-channel counts (the fractions in
:data:`GRID` of its input and output channels) and timed with
:func:`prunecli.report.latency.measure_latency` (the fastest of 10 runs), on the run's device,
batch size and threads.
Everything outside those layers (activations, pooling, additions) is one ``rest`` entry:
the dense model's end-to-end latency minus the sum of its layers' entries.

A pruned model's predicted latency is the sum of its layers' entries, each looked up at the grid
point at or above the channels it keeps (a conservative rounding), plus ``rest``. The table lives
in the run directory (:attr:`prunecli.rundir.RunDir.latency_table`); a later search step or a
resumed run reuses it and measures only entries it lacks. The final model is then measured end to
end and both figures are reported (:func:`check_prediction`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from prunecli.iterative.cost import CostModel, LayerInfo
from prunecli.report.latency import measure_latency

#: kept-channel fractions measured per layer (eight points from dense down to one eighth)
GRID: tuple[float, ...] = (1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125)
REST = "rest"
FORMAT = "prunecli-latency-table"


def grid_counts(channels: int) -> list[int]:
    """The kept-channel counts measured for a layer with ``channels`` (ascending, distinct)."""
    return sorted({max(1, math.ceil(channels * f)) for f in GRID})


def snap(channels: int, kept_fraction: float) -> int:
    """The smallest measured count at or above what ``kept_fraction`` keeps."""
    kept = max(1, math.ceil(channels * kept_fraction - 1e-9))
    return next(c for c in grid_counts(channels) if c >= kept)


def layer_key(layer: LayerInfo, cin: int, cout: int) -> str:
    """``type + shape + in/out channels``: what a latency entry depends on."""
    if layer.kind == "linear":
        return f"linear in={cin} out={cout}"
    kernel = "x".join(str(k) for k in layer.kernel_size) or str(layer.kernel)
    hw = "x".join(str(s) for s in layer.ifm_hw)
    kind = "conv+bn" if layer.norm else "conv"
    return f"{kind} k={kernel} s={layer.stride} g={layer.groups} hw={hw} in={cin} out={cout}"


def proxy_layer(layer: LayerInfo, cin: int, cout: int) -> tuple[nn.Module, tuple[int, ...]]:
    """A stand-alone layer of this shape and its per-sample input shape."""
    if layer.kind == "linear":
        return nn.Linear(cin, cout), (cin,)
    kernel = layer.kernel_size or (int(round(math.sqrt(layer.kernel))),) * 2
    padding = layer.padding or tuple(k // 2 for k in kernel)
    groups = layer.groups if layer.groups > 1 and cin % layer.groups == 0 and cout % layer.groups == 0 else 1
    if layer.groups > 1 and layer.groups == layer.in_channels:  # depthwise stays depthwise
        groups, cout = cin, cin
    conv = nn.Conv2d(cin, cout, kernel, stride=layer.stride, padding=padding, groups=groups, bias=False)
    if layer.norm:  # its BatchNorm shrinks with it: timed together
        return nn.Sequential(conv, nn.BatchNorm2d(cout)), (cin, *layer.ifm_hw)
    return conv, (cin, *layer.ifm_hw)


def _searched_outputs(layer: LayerInfo, searched: set[str]) -> bool:
    return layer.weight in searched


def _searched_inputs(layer: LayerInfo, searched: set[str]) -> bool:
    return any(p in searched for p in layer.producers)


def _in_counts(layer: LayerInfo, searched: set[str]) -> list[int]:
    return grid_counts(layer.in_channels) if _searched_inputs(layer, searched) else [layer.in_channels]


def _out_counts(layer: LayerInfo, searched: set[str]) -> list[int]:
    return grid_counts(layer.out_channels) if _searched_outputs(layer, searched) else [layer.out_channels]


@dataclass
class LatencyTable:
    """Milliseconds per layer configuration, with the conditions they were measured under."""

    device: str
    batch_size: int
    threads: int | None
    sample_shape: tuple[int, ...]
    entries: dict[str, float] = field(default_factory=dict)
    #: entries measured by the call that produced this object (0 when all came from the cache)
    measured_now: int = 0

    def conditions(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "sample_shape": list(self.sample_shape),
        }

    def save(self, path: Path) -> None:
        from prunecli.checkpoint.atomic import atomic_write

        data = json.dumps({"format": FORMAT, **self.conditions(), "entries": self.entries}, indent=1).encode()
        atomic_write(Path(path), lambda handle: handle.write(data))

    @classmethod
    def load(cls, path: Path) -> LatencyTable | None:
        """The cached table, or None when absent or not a table (it is then measured again)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return None
        return cls(
            device=str(data["device"]),
            batch_size=int(data["batch_size"]),
            threads=data["threads"],
            sample_shape=tuple(data["sample_shape"]),
            entries={str(k): float(v) for k, v in data["entries"].items()},
        )


#: how one model is timed: (model, per-sample input shape) -> milliseconds (tests substitute it)
Timer = Callable[[nn.Module, tuple[int, ...]], float]


def default_timer(
    device: str, batch_size: int, threads: int | None, runs: int = 10, warmup: int = 2
) -> Timer:
    def timer(model: nn.Module, shape: tuple[int, ...]) -> float:
        return measure_latency(
            model, shape, batch_size=batch_size, runs=runs, warmup=warmup, threads=threads, device=device
        ).median_ms

    return timer


def load_or_measure(
    path: Path | None,
    layers: Sequence[LayerInfo],
    searched: Iterable[str],
    model: nn.Module,
    sample_shape: tuple[int, ...],
    *,
    device: str = "cpu",
    batch_size: int = 1,
    threads: int | None = None,
    timer: Timer | None = None,
) -> LatencyTable:
    """The table for these layers: the cached one at ``path`` when it was measured under the same
    conditions (only missing entries are measured), else a fresh one; saved back to ``path``."""
    searched = set(searched)
    timer = timer or default_timer(device, batch_size, threads)
    table = LatencyTable(device, batch_size, threads, tuple(sample_shape))
    cached = LatencyTable.load(path) if path is not None and Path(path).is_file() else None
    if cached is not None and cached.conditions() == table.conditions():
        table.entries = dict(cached.entries)
    for layer in layers:
        for cin in _in_counts(layer, searched):
            for cout in _out_counts(layer, searched):
                key = layer_key(layer, cin, cout)
                if key not in table.entries:
                    module, shape = proxy_layer(layer, cin, cout)
                    table.entries[key] = float(timer(module, shape))
                    table.measured_now += 1
    if REST not in table.entries:  # the fastest of three timings, taken apart, for the one big entry
        dense = min(float(timer(model, tuple(sample_shape))) for _ in range(3))
        layers_sum = sum(table.entries[layer_key(la, la.in_channels, la.out_channels)] for la in layers)
        table.entries[REST] = max(0.0, dense - layers_sum)
        table.measured_now += 1
    if path is not None and table.measured_now:
        table.save(Path(path))
    return table


class LatencyCost(CostModel):
    """Predicted milliseconds: the table's entries of each layer at its kept channels, plus rest."""

    metric = "latency_ms"

    def __init__(self, table: LatencyTable, layers: Sequence[LayerInfo]) -> None:
        self.table = table
        self.layers = list(layers)

    def keys(self, levels: Mapping[str, float]) -> list[str]:
        """The table entries a model pruned to ``levels`` is predicted from (``rest`` last)."""
        keys = []
        for layer in self.layers:
            cin = snap(layer.in_channels, layer.kept_in(levels)) if layer.producers else layer.in_channels
            cout = (
                snap(layer.out_channels, layer.kept_out(levels))
                if layer.weight in levels
                else layer.out_channels
            )
            keys.append(layer_key(layer, cin, cout))
        return [*keys, REST]

    def predict(self, levels):
        total = 0.0
        for key in self.keys(levels):
            entry = self.table.entries.get(key)
            if entry is None:
                raise KeyError(f"latency table has no entry {key!r}; measure it with load_or_measure")
            total += entry
        return total


def check_prediction(
    model: nn.Module,
    sample_shape: tuple[int, ...],
    predicted_ms: float,
    *,
    device: str = "cpu",
    batch_size: int = 1,
    threads: int | None = None,
    runs: int = 30,
) -> dict[str, float]:
    """The final model measured end to end beside the table's prediction (relative error)."""
    measured = measure_latency(
        model, sample_shape, batch_size=batch_size, runs=runs, warmup=3, threads=threads, device=device
    ).median_ms
    return {
        "predicted_ms": float(predicted_ms),
        "measured_ms": float(measured),
        "error": (float(predicted_ms) - measured) / measured if measured else 0.0,
    }
