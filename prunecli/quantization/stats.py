"""Activation statistics files: collecting them, writing them, reading them, matching them to a model.

The format is Distiller's ``*_quant_stats.yaml``: one entry per module name (as
``model.named_modules()`` spells it), each with ``inputs: {0: record, ...}`` and ``output: record``,
where a record holds ``min``, ``max``, ``avg_min``, ``avg_max`` (per-sample extremes averaged
over samples), ``mean``, ``std``, ``b`` (mean absolute deviation from the mean, the Laplace
scale ACIQ uses) and ``shape``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from .quantizers import QuantizerError

RECORD_KEYS = ("min", "max", "avg_min", "avg_max", "mean", "std", "b")


class ActivationStats(dict):
    """Module name -> its statistics; ``source`` names the file it came from."""

    source: str = ""


class _Accumulator:
    """Running statistics of one tensor slot over batches (two passes: ``b`` needs the final mean)."""

    def __init__(self) -> None:
        self.count = 0
        self.batches = 0
        self.min = float("inf")
        self.max = float("-inf")
        self.sum_avg_min = 0.0
        self.sum_avg_max = 0.0
        self.total = 0.0
        self.total_sq = 0.0
        self.abs_dev = 0.0
        self.shape: tuple[int, ...] = ()

    def add(self, t: torch.Tensor) -> None:
        t = t.detach().double()
        flat = t.reshape(t.shape[0], -1) if t.dim() >= 2 else t.reshape(1, -1)
        self.min = min(self.min, float(t.min()))
        self.max = max(self.max, float(t.max()))
        self.sum_avg_min += float(flat.min(dim=1).values.mean())
        self.sum_avg_max += float(flat.max(dim=1).values.mean())
        self.total += float(t.sum())
        self.total_sq += float((t * t).sum())
        self.count += t.numel()
        self.batches += 1
        self.shape = tuple(t.shape)

    @property
    def mean(self) -> float:
        return self.total / max(self.count, 1)

    def add_deviation(self, t: torch.Tensor) -> None:
        self.abs_dev += float((t.detach().double() - self.mean).abs().sum())

    def record(self) -> dict[str, Any]:
        n = max(self.count, 1)
        var = max(self.total_sq / n - self.mean**2, 0.0) * (n / max(n - 1, 1))
        return {
            "min": self.min,
            "max": self.max,
            "avg_min": self.sum_avg_min / max(self.batches, 1),
            "avg_max": self.sum_avg_max / max(self.batches, 1),
            "mean": self.mean,
            "std": var**0.5,
            "b": self.abs_dev / n,
            "shape": "(" + ", ".join(str(d) for d in self.shape) + ")",
        }


def collect_stats(
    model: nn.Module, batches: Iterable[Any], *, device: torch.device | str = "cpu"
) -> ActivationStats:
    """Statistics of every leaf module's tensor inputs and output over ``batches`` (eval mode, no grad).

    ``batches`` yields inputs (or ``(inputs, targets)`` pairs); it is iterated twice.
    """
    leaves = {name: m for name, m in model.named_modules() if name and next(iter(m.children()), None) is None}
    acc: dict[str, dict[str, Any]] = {name: {"inputs": {}, "output": _Accumulator()} for name in leaves}
    phase = {"second": False}

    def hook_for(name: str):
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            slots = acc[name]
            second = phase["second"]
            for i, arg in enumerate(args):
                if isinstance(arg, torch.Tensor) and arg.is_floating_point():
                    a = slots["inputs"].setdefault(i, _Accumulator())
                    a.add_deviation(arg) if second else a.add(arg)
            if isinstance(output, torch.Tensor) and output.is_floating_point():
                slots["output"].add_deviation(output) if second else slots["output"].add(output)

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in leaves.items()]
    was_training = model.training
    model.eval()
    batch_list = list(batches)
    try:
        with torch.no_grad():
            for second in (False, True):
                phase["second"] = second
                for batch in batch_list:
                    x = batch[0] if isinstance(batch, (tuple, list)) else batch
                    model(x.to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    out = ActivationStats()
    for name, slots in acc.items():
        if slots["output"].count == 0:
            continue  # never called
        out[name] = {
            "inputs": {i: a.record() for i, a in sorted(slots["inputs"].items())},
            "output": slots["output"].record(),
        }
    return out


def write_stats(path: str | os.PathLike[str], stats: Mapping[str, Any], *, header: str = "") -> None:
    text = yaml.safe_dump({k: dict(v) for k, v in stats.items()}, sort_keys=False, default_flow_style=False)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    Path(path).write_text(comment + text, encoding="utf-8")


def read_stats(path: str | os.PathLike[str]) -> ActivationStats:
    """A stats file; QuantizerError naming the file when it is not one."""
    source = os.fspath(path)
    try:
        data = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    except OSError as exc:
        raise QuantizerError(
            f"cannot read the statistics file {source}: {exc.strerror}", key=("model_activation_stats",)
        ) from None
    except yaml.YAMLError as exc:
        raise QuantizerError(f"{source} is not valid YAML: {exc}", key=("model_activation_stats",)) from None
    if (
        not isinstance(data, dict)
        or not data
        or not all(isinstance(v, dict) and ("output" in v or "inputs" in v) for v in data.values())
    ):
        raise QuantizerError(
            f"{source} is not an activation statistics file (module name -> inputs/output records)",
            key=("model_activation_stats",),
            hint="write one with 'prunecli collect-stats MODEL --dataset NAME --out stats.yaml'",
        )
    out = ActivationStats(data)
    out.source = source
    return out


def _recorded_channels(record: Mapping[str, Any], linear: bool) -> int | None:
    """The channel count in a record's ``shape`` ("(256, 64, 112, 112)"): dim 1, or the last for Linear."""
    text = str(record.get("shape", "")).strip("()[] ")
    try:
        dims = [int(d) for d in text.split(",") if d.strip()]
    except ValueError:
        return None
    if len(dims) < 2:
        return None
    return dims[-1] if linear else dims[1]


def check_stats_shapes(stats: Mapping[str, Any], layers: Mapping[str, nn.Module], *, source: str = "") -> None:
    """A layer's recorded output channels equal its own (a file for a wider model has the same names)."""
    for name, module in layers.items():
        record = (stats.get(name) or {}).get("output")
        if not isinstance(record, Mapping):
            continue
        linear = isinstance(module, nn.Linear)
        ours = getattr(module, "out_features" if linear else "out_channels", None)
        recorded = _recorded_channels(record, linear)
        if ours is not None and recorded is not None and ours != recorded:
            raise QuantizerError(
                f"the statistics file {source} is for another model: its {name} output has {recorded} "
                f"channels, this model's has {ours}",
                key=("model_activation_stats",),
                hint="collect statistics for this model with "
                "'prunecli collect-stats MODEL --dataset NAME --out stats.yaml'",
            )


def check_stats_cover(stats: Mapping[str, Any], needed: Iterable[str], *, source: str = "") -> None:
    """Every layer that needs statistics has them; else the file is for another model (closest names)."""
    names = list(stats)
    missing = [n for n in needed if n not in stats]
    if not missing:
        return
    pairs = []
    for n in missing[:4]:
        close = get_close_matches(n, names, n=1, cutoff=0.0)
        pairs.append(f"{n} (closest in the file: {close[0]})" if close else n)
    raise QuantizerError(
        f"the statistics file {source or ''} does not fit this model: {len(missing)} quantized layer(s) have "
        f"no entry, e.g. " + "; ".join(pairs),
        key=("model_activation_stats",),
        hint="collect statistics for this model with 'prunecli collect-stats MODEL --dataset NAME --out stats.yaml'",
    )
