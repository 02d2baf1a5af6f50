"""Benchmark: post-training int8 (PyTorch's quantized CPU kernels) and pruned + int8, against NNI's QAT.

Every model is quantized from a min/max plan (``prunecli.quantization.minmax``) and converted with
``prunecli.quantization.int8``; sizes are bytes of the stored tensors
(``prunecli.quantization.stored.model_bytes``), latencies alternate the variants in rounds.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench import accuracy
from bench.context import Context
from bench.harness import alternate
from bench.peers import nni_side
from bench.results import NOT_INSTALLED, Section, Table, Target, Unavailable, progress, ratio, short_error

DIGITS, CIFAR = "resnet_digits", "resnet20_cifar"
SPEED_GOAL, SIZE_GOAL, TOP1_GOAL = 1.5, 0.3, 0.5  # x faster, x fp32 bytes, points
BUDGET_S = 0.2  # forward passes per measurement: about this long for the fp32 model
CIFAR_SIDE = 32


def _to_cifar(x: torch.Tensor) -> torch.Tensor:
    """Digits images (N, 1, 8, 8) as resnet20_cifar's input: bilinear to 32x32, gray channel repeated."""
    side = (CIFAR_SIDE, CIFAR_SIDE)
    return F.interpolate(x, size=side, mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)


class _Upsampled:
    """A digits loader whose batches come out as resnet20_cifar input, so the shared trainer runs unchanged."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield _to_cifar(x), y


def _calibration(loader, batches: int) -> list[torch.Tensor]:
    out = []
    for index, (x, _) in enumerate(loader):
        if index >= batches:
            break
        out.append(x)
    return out


def _int8(model: nn.Module, batches: list[torch.Tensor]):
    """The int8 model, its stored bytes, and the float model with BatchNorm folded."""
    from prunecli.checkpoint import build_checkpoint
    from prunecli.checkpoint.compact import quantize_checkpoint
    from prunecli.export.fold import fold_batchnorm
    from prunecli.quantization.minmax import minmax_plan
    from prunecli.quantization.stored import model_bytes

    model.eval()
    example = batches[0][:1]
    plan = minmax_plan(model, batches, example)
    converted = quantize_checkpoint(build_checkpoint(state_dict=model.state_dict()), model, example, plan)
    return converted.model, model_bytes(converted.payload), fold_batchnorm(model, example).model


def _forward(model: nn.Module, x: torch.Tensor, reps: int) -> Callable[[], float]:
    def run() -> float:
        with torch.inference_mode():
            start = time.perf_counter()
            for _ in range(reps):
                model(x)
            return (time.perf_counter() - start) / reps

    return run


def _latencies(
    variants: dict[str, nn.Module], x: torch.Tensor, rounds: int
) -> dict[str, tuple[float, float]]:
    """Variant -> (median seconds per forward, median per-round ratio to the first variant)."""
    first = next(iter(variants.values())).eval()
    with torch.inference_mode():
        first(x)
        start = time.perf_counter()
        first(x)
        reps = max(1, round(BUDGET_S / max(time.perf_counter() - start, 1e-6)))
    stats = alternate(
        {name: _forward(m.eval(), x, reps) for name, m in variants.items()},
        baseline=next(iter(variants)),
        rounds=rounds,
    )
    return {name: (s.median, s.ratio if s.ratio is not None else float("nan")) for name, s in stats.items()}


def _profile(model: nn.Module, x: torch.Tensor) -> str:
    """The operators taking most of the int8 model's time (for a missed speed target)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            model(x)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return ", ".join(f"{e.key} {100 * e.self_cpu_time_total / total:.0f} %" for e in events[:6])


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


class _Model:
    """One model's fp32 / fp32-folded / int8 figures."""

    def __init__(
        self, name: str, model: nn.Module, batches: list[torch.Tensor], x: torch.Tensor, rounds: int
    ):
        self.name = name
        self.fp32 = model.eval()
        self.int8, self.int8_bytes, self.folded = _int8(model, batches)
        from prunecli.quantization.stored import tensor_bytes

        self.fp32_bytes = tensor_bytes(model.state_dict())
        self.x = x
        self.times = _latencies(
            {"fp32": self.folded, "fp32 as trained": self.fp32, "int8": self.int8}, x, rounds
        )
        self.top1: dict[str, float | None] = {"fp32": None, "int8": None}

    @property
    def speedup(self) -> float:
        return 1.0 / self.times["int8"][1]

    @property
    def size_ratio(self) -> float:
        return self.int8_bytes / self.fp32_bytes


def _add_rows(table: Table, m: _Model, dense_bytes: int) -> None:
    def top1(key: str) -> str:
        value = m.top1.get(key)
        return "n/a" if value is None else f"{100 * value:.2f} %"

    t = m.times
    table.add(m.name, "fp32 as trained", top1("fp32"), _kib(m.fp32_bytes), f"{m.fp32_bytes / dense_bytes:.3f}",
              _ms(t["fp32 as trained"][0]), ratio(1 / t["fp32 as trained"][1]))  # fmt: skip
    table.add(m.name, "fp32, BatchNorm folded", top1("fp32"), _kib(m.fp32_bytes), f"{m.fp32_bytes / dense_bytes:.3f}",
              _ms(t["fp32"][0]), "1.00x")  # fmt: skip
    table.add(m.name, "int8 (prunecli, x86 kernels)", top1("int8"), _kib(m.int8_bytes),
              f"{m.int8_bytes / dense_bytes:.3f}", _ms(t["int8"][0]), ratio(m.speedup))  # fmt: skip


def _digits_models(context: Context):
    """Dense and 50 %-filter-pruned (AGP + thinning) resnet_digits trained as in the accuracy benchmark."""
    from prunecli.data import load_dataset

    settings = context.settings
    plan = accuracy._plan(settings)
    bundle = load_dataset("digits", seed=0)
    train_loader, _, test_loader = bundle.loaders(accuracy.BATCH, 0, 0)
    x = torch.zeros(1, *bundle.input_shape)
    trained = {}
    for label in (accuracy.DENSE, accuracy.OURS):
        progress(f"quantization: training {DIGITS} ({label})")
        torch.manual_seed(0)
        method = accuracy.METHODS[label](accuracy.models.build(DIGITS, seed=0), plan, x)
        accuracy.train_method(method, plan, train_loader)
        method.finish()
        trained[label] = method
    return bundle, train_loader, test_loader, trained, plan


def _cifar_on_digits(context: Context, train_loader) -> nn.Module:
    """resnet20_cifar trained densely on upsampled digits with the accuracy benchmark's trainer."""
    settings = context.settings
    plan = accuracy.Plan(settings.quant_cifar_epochs, 0, 0, settings.quant_cifar_max_steps)
    progress(f"quantization: training {CIFAR} on digits ({plan.total} epoch(s))")
    torch.manual_seed(0)
    example = torch.zeros(1, 3, CIFAR_SIDE, CIFAR_SIDE)
    method = accuracy.METHODS[accuracy.DENSE](accuracy.models.build(CIFAR, seed=0), plan, example)
    accuracy.train_method(method, plan, _Upsampled(train_loader))
    method.finish()
    return method.model.eval()


def _pruned_checkpoint(method, directory: Path) -> Path:
    """The pruned model as a prunecli checkpoint (spec + thinning recipe), for NNI's process."""
    from prunecli.checkpoint import build_checkpoint, save_checkpoint
    from prunecli.models import create_model
    from prunecli.thinning.compact import compose_recipes

    _, spec = create_model(DIGITS, dataset="digits")
    recipe = compose_recipes(*method.step.scheduler.thinning_recipes)
    path = directory / "pruned.pt"
    save_checkpoint(path, build_checkpoint(state_dict=method.model.state_dict(), model=spec, recipe=recipe))
    return path


def _nni(path: Path, context: Context) -> dict:
    settings = context.settings
    cmd = [
        str(nni_side.python()), "-m", "bench.peers.nni_quant", str(path), "--threads", str(settings.threads),
        "--batch", str(settings.quant_batch), "--epochs", str(settings.quant_nni_epochs),
    ]  # fmt: skip
    env = {"PYTHONPATH": str(nni_side.REPO_ROOT), "OMP_NUM_THREADS": str(settings.threads)}
    import os

    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=900, env={**os.environ, **env}, cwd=nni_side.REPO_ROOT
    )
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        raise RuntimeError(lines[-1] if lines else f"exit status {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(context: Context) -> Section:
    settings = context.settings
    section = Section(
        "quantization",
        "Quantization: post-training int8 and pruned + int8",
        f"Post-training int8: a min/max plan from {settings.quant_calib_batches} training batches "
        "(weights symmetric per output channel, activations asymmetric per tensor), BatchNorm folded, "
        "converted to PyTorch's quantized x86 kernels (`prunecli.quantization.int8`), ReLUs fused, residual "
        f"additions as `quantized::add`. `{DIGITS}` trained on digits exactly as in the accuracy benchmark "
        f"(dense, and `L1RankedStructureParameterPruner_AGP` to 50 % of the filters + `FilterRemover`); "
        f"`{CIFAR}` trained on the same digits split brought to its 3x{CIFAR_SIDE}x{CIFAR_SIDE} input "
        "(bilinear upsampling, gray channel repeated three times; no CIFAR-10 offline): plain SGD as the "
        f"accuracy benchmark's dense run, {settings.quant_cifar_epochs} epoch(s) at a constant lr "
        f"{accuracy.LR}"
        + (
            f" (at most {settings.quant_cifar_max_steps} steps each)"
            if settings.quant_cifar_max_steps
            else ""
        )
        + ", calibrated on the same training batches upsampled. "
        f"Latency: batch {settings.quant_batch}, {settings.threads} thread(s), "
        f"{settings.quant_rounds} alternating rounds, median seconds per forward; speed-ups are medians of "
        "per-round ratios against the fp32 model with BatchNorm folded (what int8 folds too). Size: bytes of the "
        "stored tensors (int8 codes, scales and zero points, float biases). NNI: `QATQuantizer` (8-bit "
        "inputs, weights, outputs of every Conv2d / Linear) fine-tuning the same pruned model for "
        f"{settings.quant_nni_epochs} epoch(s) in its own process (`bench/peers/nni_quant.py`); NNI's "
        "quantizers simulate (a float model with fake-quant wrappers; its int8 path is TensorRT on GPUs), "
        "so its size and latency are those of that simulated model, reported as they are.",
    )
    table = Table(
        "Post-training int8 against fp32",
        [
            "model",
            "variant",
            "top-1 (digits test)",
            "tensor bytes",
            "size / dense fp32",
            "latency",
            "speed-up",
        ],
    )
    section.tables.append(table)
    try:
        bundle, train_loader, test_loader, trained, _plan = _digits_models(context)
    except (ImportError, Unavailable) as exc:
        table.add("all", "not available", str(exc), "", "", "", "")
        return section
    calibration = _calibration(train_loader, settings.quant_calib_batches)
    x16 = torch.randn(settings.quant_batch, *bundle.input_shape, generator=torch.Generator().manual_seed(0))

    progress(f"quantization: {DIGITS}")
    dense = _Model(DIGITS, trained[accuracy.DENSE].model, calibration, x16, settings.quant_rounds)
    dense.top1 = {
        "fp32": accuracy.top1(dense.fp32, test_loader),
        "int8": accuracy.top1(dense.int8, test_loader),
    }
    _add_rows(table, dense, dense.fp32_bytes)

    progress(f"quantization: {CIFAR}")
    cifar_model = _cifar_on_digits(context, train_loader)
    cifar_batches = [_to_cifar(x) for x in calibration]
    cifar_x = torch.randn(
        settings.quant_batch, 3, CIFAR_SIDE, CIFAR_SIDE, generator=torch.Generator().manual_seed(1)
    )
    cifar = _Model(CIFAR, cifar_model, cifar_batches, cifar_x, settings.quant_rounds)
    cifar_test = _Upsampled(test_loader)
    cifar.top1 = {
        "fp32": accuracy.top1(cifar.fp32, cifar_test),
        "int8": accuracy.top1(cifar.int8, cifar_test),
    }
    _add_rows(table, cifar, cifar.fp32_bytes)

    progress(f"quantization: {DIGITS}, 50 % filters pruned")
    pruned_method = trained[accuracy.OURS]
    pruned = _Model(
        f"{DIGITS}, 50 % filters pruned", pruned_method.model, calibration, x16, settings.quant_rounds
    )
    pruned.top1 = {
        "fp32": accuracy.top1(pruned.fp32, test_loader),
        "int8": accuracy.top1(pruned.int8, test_loader),
    }
    _add_rows(table, pruned, dense.fp32_bytes)
    _targets(section, dense, cifar)
    _pruned_section(section, context, pruned, pruned_method, dense.fp32_bytes)
    return section


def _speed_target(section: Section, m: _Model) -> None:
    met = m.speedup >= SPEED_GOAL
    section.targets.append(
        Target(
            f"{m.name}: int8 >= {SPEED_GOAL}x faster than fp32 at batch 16 (same threads)",
            f"{m.speedup:.2f}x ({_ms(m.times['int8'][0])} vs {_ms(m.times['fp32'][0])})",
            met,
            "" if met else "int8 profile: " + _profile(m.int8, m.x),
        )
    )


def _targets(section: Section, dense: _Model, cifar: _Model) -> None:
    for m in (dense, cifar):
        gap = 100 * (m.top1["fp32"] - m.top1["int8"])
        section.targets.append(
            Target(
                f"{m.name}: post-training int8 top-1 within {TOP1_GOAL} point of fp32 on digits",
                f"{100 * m.top1['int8']:.2f} % vs {100 * m.top1['fp32']:.2f} % "
                + (f"({gap:.2f} points below)" if gap >= 0 else f"({-gap:.2f} points above)"),
                gap <= TOP1_GOAL,
            )
        )
    for m in (dense, cifar):
        _speed_target(section, m)
        section.targets.append(
            Target(
                f"{m.name}: int8 size <= {SIZE_GOAL}x fp32",
                f"{m.size_ratio:.3f}x ({_kib(m.int8_bytes)} vs {_kib(m.fp32_bytes)})",
                m.size_ratio <= SIZE_GOAL,
            )
        )


def _pruned_section(section: Section, context: Context, pruned: _Model, method, dense_bytes: int) -> None:
    table = Table(
        f"Pruned (50 % filters) + int8 against pruned fp32 and NNI's QAT on the same pruned model "
        f"(batch {context.settings.quant_batch}, {context.settings.threads} thread(s))",
        ["variant", "top-1 (digits test)", "tensor bytes", "size / pruned fp32", "size / dense fp32", "latency",
         "speed-up vs pruned fp32"],
    )  # fmt: skip
    section.tables.append(table)
    p32, p8 = pruned.fp32_bytes, pruned.int8_bytes
    table.add("pruned fp32, BatchNorm folded", f"{100 * pruned.top1['fp32']:.2f} %", _kib(p32), "1.000",
              f"{p32 / dense_bytes:.3f}", _ms(pruned.times["fp32"][0]), "1.00x")  # fmt: skip
    table.add("pruned + int8 (prunecli, post-training)", f"{100 * pruned.top1['int8']:.2f} %", _kib(p8),
              f"{p8 / p32:.3f}", f"{p8 / dense_bytes:.3f}", _ms(pruned.times["int8"][0]), ratio(pruned.speedup))  # fmt: skip
    nni: dict | None = None
    if not context.settings.nni:
        table.add("NNI QATQuantizer", "skipped (--quick)", "", "", "", "", "")
    else:
        try:
            progress("quantization: NNI QATQuantizer")
            with tempfile.TemporaryDirectory() as tmp:
                nni = _nni(_pruned_checkpoint(method, Path(tmp)), context)
        except Unavailable as exc:
            table.add("NNI QATQuantizer", str(exc) or NOT_INSTALLED, "", "", "", "", "")
        except Exception as exc:  # a peer failing is a result to report
            table.add("NNI QATQuantizer", f"failed: {short_error(exc)}", "", "", "", "", "")
    if nni is not None:
        nni_speed = nni["fp32_latency_ms"] / nni["latency_ms"]
        table.add(
            f"NNI {nni['nni']} QATQuantizer (simulated; latency vs fp32 in its own process)",
            f"{100 * nni['top1']:.2f} %", _kib(nni["bytes"]), f"{nni['bytes'] / p32:.3f}",
            f"{nni['bytes'] / dense_bytes:.3f}", f"{nni['latency_ms']:.2f} ms", ratio(nni_speed),
        )  # fmt: skip
        smaller = p8 < nni["bytes"]
        faster = pruned.speedup > nni_speed
        section.targets.append(
            Target(
                "pruned + int8: smaller and faster than NNI's QAT on the same pruned model",
                f"size {p8 / nni['bytes']:.2f}x NNI's; speed-up {pruned.speedup:.2f}x vs NNI's {nni_speed:.2f}x",
                smaller and faster,
            )
        )
    else:
        section.targets.append(
            Target(
                "pruned + int8: smaller and faster than NNI's QAT on the same pruned model",
                "NNI not run",
                None,
            )
        )
    section.targets.append(
        Target(
            "pruned + int8: size <= 0.3x pruned fp32",
            f"{p8 / p32:.3f}x",
            p8 / p32 <= SIZE_GOAL,
        )
    )
