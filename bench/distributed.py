"""Benchmarks 6 and 7: multi-process scaling on CPU, and the GPU rows (masking, AMP, 1 -> N GPUs).

Every measurement runs prunecli's own training step (``prunecli.training.loop.train_epoch`` with a
compression scheduler holding 50% masks on every convolution of resnet20_cifar, DDP when there are
several processes) in fresh processes started the way users start them: ``python`` for one process,
``python -m torch.distributed.run --standalone`` for several. A process times its steady-state
steps (after warm-up); the slowest process's time counts. Throughput = global samples / time.

``python -m bench.distributed worker ...`` is the worker both use.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from bench.context import Context
from bench.harness import rotation
from bench.results import Section, Table, Target, progress, ratio

MODEL = "resnet20_cifar"
MASK_LEVEL = 0.5


# ------------------------------------------------------------------------------------------ worker
def _worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    from prunecli.compression.scheduler import CompressionScheduler
    from prunecli.models import create_model
    from prunecli.training.distributed import World
    from prunecli.training.loop import train_epoch
    from prunecli.training.precision import Precision

    requested = torch.device(args.device)
    world = World.from_environment(requested)
    device = world.local_device(requested)
    torch.manual_seed(0)
    model, _ = create_model(MODEL, dataset="cifar10")
    model.to(device)
    scheduler = CompressionScheduler(model)
    if args.masked:
        for name, param in model.named_parameters():
            if param.dim() == 4:
                scheduler.zeros_mask_dict[name].mask = (torch.rand_like(param) >= MASK_LEVEL).to(param.dtype)
        scheduler.mask_all_weights()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    per_process = args.global_batch // world.size
    batches = [
        (torch.rand(per_process, 3, 32, 32), torch.randint(10, (per_process,)))
        for _ in range(args.steps + args.warmup)
    ]
    trainable = world.replicate(model, device)
    precision = Precision(args.amp, device)
    criterion = nn.CrossEntropyLoss()

    def steps(chunk: list, epoch: int) -> None:
        train_epoch(
            trainable, chunk, criterion, optimizer, scheduler, epoch, len(chunk), device,
            precision=precision, reduce=world.sum,
        )  # fmt: skip

    steps(batches[: args.warmup], 0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    world.barrier()
    began = time.perf_counter()
    steps(batches[args.warmup :], 1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = world.max(time.perf_counter() - began)
    if world.is_main:
        Path(args.out).write_text(
            json.dumps({"seconds": elapsed, "samples_per_s": args.global_batch * args.steps / elapsed})
        )
    world.close()


def _measure(processes: int, threads: int, *, device: str = "cpu", global_batch: int, steps: int,
             masked: bool = True, amp: str | None = None) -> float:  # fmt: skip
    """Samples per second of one fresh run (``processes`` > 1: through torch.distributed.run)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        worker = [
            "-m", "bench.distributed", "worker", "--threads", str(threads), "--device", device,
            "--global-batch", str(global_batch), "--steps", str(steps), "--out", str(out),
        ]  # fmt: skip
        if masked:
            worker.append("--masked")
        if amp:
            worker += ["--amp", amp]
        launcher = (
            ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
            if processes > 1
            else []
        )
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run([sys.executable, *launcher, *worker], check=True, env=env, capture_output=True)
        return float(json.loads(out.read_text())["samples_per_s"])


# ------------------------------------------------------------------------------------------ CPU scaling
def run_scaling(context: Context) -> Section:
    quick = context.settings.quick
    rounds, steps, global_batch = (1, 2, 8) if quick else (3, 10, 32)
    variants = {"1 process x 2 threads": (1, 2), "2 processes x 1 thread": (2, 1)}
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for index in range(rounds):
        for name in rotation(list(variants), index):
            processes, threads = variants[name]
            samples[name].append(_measure(processes, threads, global_batch=global_batch, steps=steps))
            progress(f"scaling round {index + 1}/{rounds}: {name} {samples[name][-1]:.1f} samples/s")
    table = Table(
        f"{MODEL}, 50% masks on every convolution, global batch {global_batch}, {steps} timed steps",
        ["variant", "samples/s (median)", "rounds", "vs 1 process x 2 threads"],
    )
    medians = {name: sorted(v)[len(v) // 2] for name, v in samples.items()}
    base = medians["1 process x 2 threads"]
    for name, values in samples.items():
        table.add(
            name, f"{medians[name]:.1f}", ", ".join(f"{v:.1f}" for v in values), ratio(medians[name] / base)
        )
    return Section(
        key="scaling",
        title="Multi-process scaling on CPU (DDP, gloo)",
        method=__doc__.split("\n\n")[1].replace("\n", " ")
        + " Both variants use the two cores of this machine; each round runs both in rotating order."
        + " There is no goal: the ratio is reported as measured.",
        tables=[table],
        notes=[
            "Each process holds a full model and optimizer and all-reduces every gradient through "
            "gloo over loopback; one process with two threads shares one model but synchronises its "
            "threads inside every operator. Which costs more depends on how busy the machine is: "
            "record the load average above next to the ratio."
        ],
    )


# ------------------------------------------------------------------------------------------ GPU
def run_gpu(context: Context) -> Section:
    if not torch.cuda.is_available():
        print("no CUDA device", flush=True)
        return Section(
            key="gpu",
            title="GPU: masked step, mixed precision, 1 -> N GPUs",
            method="Needs a CUDA device.",
            notes=["no CUDA device on this machine: nothing measured"],
        )
    quick = context.settings.quick
    steps, batch = (5, 64) if quick else (50, 256)
    gpus = torch.cuda.device_count()
    unmasked = _measure(1, 1, device="cuda", global_batch=batch, steps=steps, masked=False)
    masked = _measure(1, 1, device="cuda", global_batch=batch, steps=steps)
    bf16 = _measure(1, 1, device="cuda", global_batch=batch, steps=steps, amp="bf16")
    fp16 = _measure(1, 1, device="cuda", global_batch=batch, steps=steps, amp="fp16")
    table = Table(
        f"{MODEL}, batch {batch} per GPU, {steps} timed steps", ["variant", "samples/s", "vs masked fp32"]
    )
    for name, value in (("unmasked fp32", unmasked), ("masked fp32", masked), ("masked bf16", bf16),
                        ("masked fp16 + GradScaler", fp16)):  # fmt: skip
        table.add(name, f"{value:.0f}", ratio(value / masked))
    overhead = unmasked / masked
    targets = [Target("masked step <= 1.05x unmasked", ratio(overhead), overhead <= 1.05)]
    if gpus > 1:
        multi = _measure(gpus, 1, device="cuda", global_batch=batch * gpus, steps=steps)
        table.add(f"masked fp32 on {gpus} GPUs (global batch {batch * gpus})", f"{multi:.0f}",
                  ratio(multi / masked))  # fmt: skip
        targets.append(
            Target(f"1 -> {gpus} GPU scaling", ratio(multi / masked), None, "reported as measured")
        )
    return Section(
        key="gpu",
        title="GPU: masked step, mixed precision, 1 -> N GPUs",
        method=__doc__.split("\n\n")[1].replace("\n", " "),
        tables=[table],
        targets=targets,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.distributed")
    parser.add_argument("role", choices=["worker"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--global-batch", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--masked", action="store_true")
    parser.add_argument("--amp", choices=["bf16", "fp16"])
    parser.add_argument("--out", required=True)
    _worker(parser.parse_args(argv))


if __name__ == "__main__":
    main()
