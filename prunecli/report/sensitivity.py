"""Distiller's one-shot pruning sensitivity analysis (``--sense``).

For each 2D/4D weight (4D only for filter/channel pruning) and each sparsity level, that single
tensor is pruned one-shot from its original values and the model is evaluated on the test split;
every other tensor keeps its weights. The result shows which layers tolerate pruning, which is
how Distiller users choose per-layer targets.
"""

from __future__ import annotations

import copy
import csv
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from prunecli.errors import PruneCliError
from prunecli.report.evaluate import evaluate

#: --kind -> the structure Distiller's ranked pruner removes (None: element-wise level pruning)
KINDS: dict[str, str | None] = {"element": None, "filter": "Filters", "channel": "Channels"}
CSV_HEADER: tuple[str, ...] = ("parameter", "sparsity", "top1", "top5", "loss")


@dataclass
class SensitivityPoint:
    parameter: str
    sparsity: float
    top1: float
    top5: float
    loss: float

    def as_dict(self) -> dict:
        return asdict(self)


def sparsity_levels(start: float, stop: float, step: float) -> list[float]:
    """``numpy.arange(start, stop, step)`` as Distiller does (stop excluded), rounded to 10 digits."""
    if not (0.0 <= start < stop <= 1.0) or step <= 0:
        raise PruneCliError(
            f"bad sparsity range start={start} stop={stop} step={step}",
            hint="use 0 <= START < STOP <= 1 and STEP > 0, e.g. --range 0 0.95 0.05",
        )
    n = math.ceil((stop - start) / step - 1e-9)
    return [round(start + i * step, 10) for i in range(n)]


def analysed_parameters(model: nn.Module, kind: str) -> list[str]:
    dims = (2, 4) if KINDS[kind] is None else (4,)
    return [n for n, p in model.named_parameters() if p.dim() in dims]


def pruning_mask(tensor: torch.Tensor, kind: str, sparsity: float) -> torch.Tensor:
    from prunecli.pruners.criteria import level_mask, structure_mask

    group = KINDS[kind]
    if group is None:
        return level_mask(tensor, sparsity)
    return structure_mask(tensor, group, sparsity, p=1)


def prune_one(model: nn.Module, parameter: str, kind: str, sparsity: float) -> None:
    """Prune one tensor of ``model`` in place (used by the analysis and to check it)."""
    param = dict(model.named_parameters())[parameter]
    with torch.no_grad():
        param.mul_(pruning_mask(param.detach(), kind, sparsity))


def analyze(
    model: nn.Module,
    loader: DataLoader,
    *,
    kind: str = "element",
    levels: Sequence[float],
    parameters: Sequence[str] | None = None,
    max_batches: int | None = None,
    device: str | torch.device = "cpu",
    on_point: Callable[[SensitivityPoint], None] | None = None,
) -> list[SensitivityPoint]:
    """Evaluate every (parameter, level) pair; ``model`` itself is left untouched."""
    if kind not in KINDS:
        raise PruneCliError(f"unknown sensitivity kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    from prunecli.quantization.int8 import Int8Model

    if isinstance(model, Int8Model):
        raise PruneCliError(
            "the model is an int8 model: its weights are integer codes, which this analysis cannot prune",
            hint="analyse the float checkpoint (`prunecli thin --no-int8` writes one from a quantized run)",
        )
    work = copy.deepcopy(model).to(device)
    names = list(parameters) if parameters is not None else analysed_parameters(work, kind)
    params = dict(work.named_parameters())
    unknown = [n for n in names if n not in params]
    if unknown:
        raise PruneCliError(
            f"no such parameter(s): {', '.join(unknown)}",
            hint="name parameters as model.named_parameters() does, e.g. layer1.0.conv1.weight",
        )
    points: list[SensitivityPoint] = []
    for name in names:
        param = params[name]
        original = param.detach().clone()
        try:
            for level in levels:
                with torch.no_grad():
                    param.copy_(original * pruning_mask(original, kind, level))
                r = evaluate(work, loader, device=device, max_batches=max_batches)
                point = SensitivityPoint(name, float(level), r.top1, r.top5, r.loss)
                points.append(point)
                if on_point is not None:
                    on_point(point)
        finally:
            with torch.no_grad():
                param.copy_(original)
    return points


def write_csv(points: Sequence[SensitivityPoint], path: str | os.PathLike) -> None:
    """Distiller's sensitivity.csv layout: one row per parameter x sparsity level."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_HEADER)
        for p in points:
            writer.writerow([p.parameter, repr(p.sparsity), repr(p.top1), repr(p.top5), repr(p.loss)])


def read_csv(path: str | os.PathLike) -> list[SensitivityPoint]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        SensitivityPoint(
            r["parameter"], float(r["sparsity"]), float(r["top1"]), float(r["top5"]), float(r["loss"])
        )
        for r in rows
    ]


def write_outputs(points: Sequence[SensitivityPoint], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    from prunecli.report.plots import plot_sensitivity

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out / "sensitivity.csv", out / "sensitivity.png"
    write_csv(points, csv_path)
    plot_sensitivity([p.as_dict() for p in points], png_path)
    return csv_path, png_path
