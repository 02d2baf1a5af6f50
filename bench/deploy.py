"""Benchmark 6: deployment -- rounded channel counts and folded BatchNorm, in PyTorch and ONNX Runtime.

Half of every group's filters are removed with ``round_to=8`` (prunecli: ``auto_dependency`` with
``round_to``; Torch-Pruning: its own ``round_to=8``), BatchNorm is folded into the convolutions of every
model (dense included), and dense and thinned models are timed in PyTorch eager and in ONNX Runtime.
The export part times ``prunecli.export.export_model`` (export + verification) for prunecli's thinned
models and sets each file's size next to the compact checkpoint's.
"""

from __future__ import annotations

import copy
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bench import models, ours
from bench.context import Context
from bench.harness import alternate
from bench.latency import speedup_cells
from bench.peers import tp_side
from bench.results import Section, Table, Target, progress, ratio, seconds

RATIO = 0.5
ROUND_TO = 8
DENSE, OURS, TP = "dense", "prunecli", "Torch-Pruning"
MEDIAN_GOAL, WORST_GOAL = 0.85, 0.7

Forward = Callable[[torch.Tensor], Any]


def _ours(dense: nn.Module, x: torch.Tensor) -> tuple[nn.Module, dict]:
    model = copy.deepcopy(dense)
    recipe = ours.prune_filters_and_thin(model, x, RATIO, round_to=ROUND_TO)
    return model, recipe


def _tp(dense: nn.Module, x: torch.Tensor) -> nn.Module:
    model = copy.deepcopy(dense)
    pruner = tp_side.pruner(model, x, RATIO, round_to=ROUND_TO)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner.step()
    return model


def _onnx(model: nn.Module, x: torch.Tensor, workdir: str, name: str, threads: int) -> Forward:
    import onnxruntime as ort

    from prunecli.export import export_model

    path = os.path.join(workdir, f"{name}.onnx")
    export_model(model, x, path, format="onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda t: session.run(None, {input_name: t.numpy()})


def _fastest(forward: Forward, x: torch.Tensor, runs: int) -> Callable[[], float]:
    """One measurement: the fastest of ``runs`` forward passes (least disturbed by other tenants)."""

    def measure() -> float:
        best = float("inf")
        with torch.inference_mode():
            for _ in range(runs):
                start = time.perf_counter()
                forward(x)
                best = min(best, time.perf_counter() - start)
        return best

    return measure


def _runs_for(forward: Forward, x: torch.Tensor, budget: float) -> int:
    with torch.inference_mode():
        start = time.perf_counter()
        forward(x)  # also the warm-up
    return max(1, round(budget / max(time.perf_counter() - start, 1e-6)))


def _onnxruntime_missing() -> str | None:
    from prunecli.report.deploy_latency import onnxruntime_available

    return None if onnxruntime_available() else 'not installed (pip install -e ".[export]")'


def run(context: Context) -> Section:
    settings = context.settings
    section = Section(
        "deploy",
        "Deployment: rounded channels, folded BatchNorm, ONNX Runtime, export",
        f"{RATIO:.0%} of every group's filters removed (L1 ranking, the classifier kept) with `round_to={ROUND_TO}`: "
        "prunecli through `build_scheduler(auto_dependency=True, round_to=8)` and `thin_model`, Torch-Pruning "
        "through `BasePruner(..., round_to=8)`; random weights. Every model, dense included, has its "
        "BatchNorm folded into the convolution before it (`prunecli.export.fold_batchnorm`); ONNX Runtime "
        "runs the file written and verified by `prunecli.export.export_model` (opset 18, CPU provider). "
        f"Batch {settings.deploy_batch}, {settings.threads} thread(s); each measurement is the fastest of "
        f"repeated forward passes (about {settings.deploy_budget_s} s of the dense model), dense and thinned "
        f"alternate over {settings.deploy_rounds} rounds and the speed-up is the median of per-round ratios. "
        "prunecli rounds kept counts up (never below the requested count), Torch-Pruning rounds them down, "
        "so their MAC reductions differ where the requested count is not a multiple of 8. Export: "
        "wall time of `export_model` (export, reload in the runtime, comparison on two random inputs) and the "
        "file size next to the compact checkpoint's (`save_checkpoint` of the thinned weights and recipe).",
    )
    latency = Table(
        "Latency with round_to=8 and BatchNorm folded, dense vs thinned",
        ["model", "runtime", "dense", "tool", "thinned", "speed-up", "MAC reduction", "speed-up / MAC reduction"],
    )
    export = Table(
        "Export of prunecli's thinned models",
        ["model", "compact checkpoint", "format", "export + verify", "file", "file / checkpoint", "max difference"],
    )
    section.tables += [latency, export]
    values: list[float] = []
    for name in settings.deploy_models:
        values += _one_model(name, settings, latency, export, section)
    _targets(section, values)
    return section


def _one_model(name: str, settings: Any, latency: Table, export: Table, section: Section) -> list[float]:
    from prunecli.export import fold_batchnorm
    from prunecli.report.compute import total_macs

    progress(f"deploy {name}")
    side = dict(settings.thin_models).get(name) or (224 if ":" in name else 32)
    dense = models.build(name).eval()
    x1 = models.example_input(side)
    thinned: dict[str, nn.Module] = {}
    recipe = None
    thinned[OURS], recipe = _ours(dense, x1)
    if tp_side.version():
        thinned[TP] = _tp(dense, x1)
    else:
        latency.add(name, "both", "", TP, "not installed", "", "", "")
    macs = {k: total_macs(m, x1) for k, m in {DENSE: dense, **thinned}.items()}
    x = models.example_input(side, settings.deploy_batch)
    folded = {k: fold_batchnorm(m.eval(), x).model for k, m in {DENSE: dense, **thinned}.items()}
    ours_values: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        runtimes: dict[str, Callable[[], dict[str, Forward]] | str] = {"PyTorch eager": lambda: dict(folded)}
        missing = _onnxruntime_missing()
        runtimes["ONNX Runtime"] = missing or (
            lambda: {k: _onnx(m, x, tmp, k, settings.threads) for k, m in folded.items()}
        )
        for runtime, make in runtimes.items():
            if isinstance(make, str):
                latency.add(name, runtime, "", "all", make, "", "", "")
                continue
            progress(f"deploy {name}: {runtime}")
            forwards = make()
            runs = _runs_for(forwards[DENSE], x, settings.deploy_budget_s)
            variants = {k: _fastest(f, x, runs) for k, f in forwards.items()}
            stats = alternate(variants, baseline=DENSE, rounds=settings.deploy_rounds, warmup=1)
            for tool in thinned:
                s = stats[tool]
                if not s.ok or not s.ratio:
                    latency.add(name, runtime, seconds(stats[DENSE].median), tool, f"failed: {s.error}", "", "", "")
                    continue
                speedup, reduction = 1 / s.ratio, macs[DENSE] / macs[tool]
                latency.add(name, runtime, *speedup_cells(stats[DENSE].median, tool, s.median, speedup, reduction))
                if tool == OURS:
                    ours_values.append(speedup / reduction)
        _export_rows(name, thinned[OURS], recipe, x1, export, tmp, settings.deploy_formats)
    widths = sorted({m.out_channels for m in thinned[OURS].modules() if isinstance(m, nn.Conv2d)})
    odd = [w for w in widths if w % ROUND_TO]
    section.notes.append(
        f"{name}: prunecli's thinned convolutions have {len(widths)} distinct widths"
        + (f"; not multiples of {ROUND_TO}: {odd} (groups narrower than the rounded count keep every channel)" if odd else f", all multiples of {ROUND_TO}")
        + "."
    )
    return ours_values


def _export_rows(
    name: str, model: nn.Module, recipe: Any, x: torch.Tensor, table: Table, tmp: str, formats: tuple[str, ...]
) -> None:
    from prunecli.checkpoint import build_checkpoint, save_checkpoint
    from prunecli.errors import PruneCliError
    from prunecli.export import export_model

    ckpt = os.path.join(tmp, "compact.pt")
    save_checkpoint(ckpt, build_checkpoint(state_dict=model.state_dict(), recipe=recipe))
    size = os.path.getsize(ckpt)
    for fmt in formats:
        progress(f"deploy {name}: export {fmt}")
        path = os.path.join(tmp, f"model.{fmt}")
        start = time.perf_counter()
        try:
            report = export_model(model, x, path, format=fmt)
        except PruneCliError as exc:
            table.add(name, _mib(size), fmt, f"failed: {exc.message[:120]}", "", "", "")
            continue
        took = time.perf_counter() - start
        table.add(
            name,
            _mib(size),
            fmt,
            seconds(took),
            _mib(report.file_bytes),
            ratio(report.file_bytes / size),
            f"{report.max_error:.1e}",
        )


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def _targets(section: Section, values: list[float]) -> None:
    goal = f"speed-up / MAC reduction with round_to={ROUND_TO} and folded BatchNorm (batch >= 16)"
    if not values:
        section.targets.append(Target(goal, "no prunecli row measured", None))
        return
    median, worst = statistics.median(values), min(values)
    section.targets.append(
        Target(
            f"{goal}: median >= {MEDIAN_GOAL}",
            f"median {median:.2f} over {len(values)} rows",
            median >= MEDIAN_GOAL,
            "" if median >= MEDIAN_GOAL else MISS_NOTE,
        )
    )
    section.targets.append(
        Target(
            f"{goal}: worst >= {WORST_GOAL}",
            f"worst {worst:.2f}",
            worst >= WORST_GOAL,
            "" if worst >= WORST_GOAL else MISS_NOTE,
        )
    )


#: why the ratio stays below the goal where it does (see docs/export.md for the per-model figures)
MISS_NOTE = (
    "Torch-Pruning's round_to=8 models (same or fewer channels) land at the same ratios, so the gap is not in "
    "the thinning. ONNX Runtime comes closest (resnet50 0.90, mobilenet_v2 0.76, resnet56_cifar 0.69). The "
    "lowest rows are resnet56_cifar in PyTorch eager; torch.profiler on its folded models at batch 16 puts 90 % "
    "(dense) and 93 % (thinned) of the time in the oneDNN convolution itself, 237 ms -> 107 ms per pass (2.2x for "
    "4x fewer MACs): at 8-32 channels and 32x32 the convolution kernels run at about half their efficiency at "
    "16-64 channels, so the loss is in the kernels, not in per-op overhead or BatchNorm. mobilenet_v2's "
    "depthwise convolutions are memory-bound and shrink with the channel count, not with the MACs"
)
