"""``python -m bench all [--quick] [--output PATH]``: run the benchmarks, write one Markdown file."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench import (
    accuracy,
    app_cost,
    deploy,
    distributed,
    engine,
    hooks,
    iterative,
    latency,
    normalized,
    qat,
    quantization,
    thinning,
    vit_accuracy,
)
from bench.context import Context
from bench.machine import load_average, machine_info
from bench.markdown import document
from bench.results import Section
from bench.settings import FULL, QUICK

#: benchmark name -> runner, in report order (latency reuses the thinning benchmark's models)
BENCHMARKS: dict[str, Callable[[Context], Section]] = {
    "hooks": hooks.run,
    "thinning": thinning.run,
    "latency": latency.run,
    "deploy": deploy.run,
    "app": app_cost.run,
    "accuracy": accuracy.run,
    "engine-overhead": engine.run_overhead,
    "engine-accuracy": engine.run_accuracy,
    "scaling": distributed.run_scaling,
    "gpu": distributed.run_gpu,
    "normalized": normalized.run,
    "vit_accuracy": vit_accuracy.run,
    "quantization": quantization.run,
    "qat": qat.run,
    "iterative": iterative.run,
}

DEFAULT_OUTPUT = Path("docs/benchmarks.md")


def write(path: Path, text: str) -> None:
    """Atomic, and repeated after every benchmark so a cut-short run still leaves its results."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("which", nargs="+", choices=["all", *BENCHMARKS], help="benchmarks to run")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds, for smoke tests")
    parser.add_argument("--output", type=Path, help="Markdown file to write")
    return parser.parse_args(argv)


def default_output(args: argparse.Namespace) -> Path:
    """Only a full run of everything may replace the committed report."""
    if "all" in args.which and not args.quick:
        return DEFAULT_OUTPUT
    return Path(tempfile.gettempdir()) / "prunecli-benchmarks.md"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    torch.set_num_threads(settings.threads)
    names = list(BENCHMARKS) if "all" in args.which else [n for n in BENCHMARKS if n in args.which]
    context = Context(settings)
    machine = machine_info()
    began = time.perf_counter()
    sections = []
    output = args.output or default_output(args)
    command = "python -m bench " + " ".join(argv)
    for name in names:
        start = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        sections.append(BENCHMARKS[name](context))
        print(f"[bench] {name} done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
        done = name == names[-1]
        finished = {
            "load average at end (1, 5, 15 min)": load_average(),
            "total wall time": f"{time.perf_counter() - began:.0f} s"
            + ("" if done else " (run still going)"),
        }
        write(output, document(sections, machine | finished, command, settings.describe()))
    print(f"[bench] wrote {output}", file=sys.stderr)
    return 0
