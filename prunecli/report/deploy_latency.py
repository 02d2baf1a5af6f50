"""Latency the way a model is deployed: BatchNorm folded, and in ONNX Runtime when it is installed.

The report's headline latency times the models as stored (BatchNorm as a separate op, PyTorch eager).
Deployed models usually have BatchNorm folded into the layer before it and often run in ONNX Runtime,
where per-layer overheads differ; this table shows dense and compressed both ways so the speed-up a
user will see is not guessed from the eager figure.
"""

from __future__ import annotations

import importlib.util
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunecli.errors import PruneCliError

Forward = Callable[[torch.Tensor], Any]


def time_forward(forward: Forward, x: torch.Tensor, *, runs: int, warmup: int) -> float:
    """Median milliseconds of ``runs`` calls of ``forward(x)`` after ``warmup`` calls."""
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            forward(x)
        for _ in range(runs):
            start = time.perf_counter()
            forward(x)
            times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def onnxruntime_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def _onnx_forward(
    model: nn.Module, x: torch.Tensor, workdir: Path, name: str, threads: int | None
) -> Forward:
    """Export ``model`` (verified) and return an ONNX Runtime session's forward."""
    import onnxruntime as ort

    from prunecli.export import export_model

    path = workdir / f"{name}.onnx"
    export_model(model, x, path, format="onnx")
    settings = ort.SessionOptions()
    settings.intra_op_num_threads = threads or torch.get_num_threads()
    settings.log_severity_level = 3
    session = ort.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda t: session.run(None, {input_name: t.numpy()})


def latency_table(
    dense: nn.Module,
    compressed: nn.Module,
    sample_shape: tuple[int, ...],
    *,
    batch_size: int,
    runs: int,
    warmup: int,
    threads: int | None,
) -> list[dict[str, Any]]:
    """Rows: PyTorch eager with BatchNorm as trained and folded, then ONNX Runtime (folded) when installed.

    CPU only (ONNX Runtime's CPU provider; the folded eager rows use the same device for comparison).
    """
    from prunecli.export import fold_batchnorm

    x = torch.randn(batch_size, *sample_shape)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    dense_was, comp_was = dense.training, compressed.training
    dense.eval()
    compressed.eval()
    try:
        folded = {"dense": fold_batchnorm(dense, x), "compressed": fold_batchnorm(compressed, x)}
        rows = [
            _timed("pytorch", "as trained", dense, compressed, x, runs, warmup),
            _timed("pytorch", "folded", folded["dense"].model, folded["compressed"].model, x, runs, warmup),
        ]
        rows[-1]["folded_batchnorms"] = {k: len(v.pairs) for k, v in folded.items()}
        if not onnxruntime_available():
            rows.append(_missing_row('not measured: pip install -e ".[export]" adds ONNX Runtime'))
            return rows
        with tempfile.TemporaryDirectory(prefix="prunecli-report-") as tmp:
            try:
                forwards = [
                    _onnx_forward(folded[side].model, x, Path(tmp), side, threads)
                    for side in ("dense", "compressed")
                ]
            except PruneCliError as exc:
                rows.append(_missing_row(f"not measured: {exc.message}"))
                return rows
            rows.append(_timed("onnxruntime", "folded", forwards[0], forwards[1], x, runs, warmup))
            rows[-1]["folded_batchnorms"] = rows[1]["folded_batchnorms"]
        return rows
    finally:
        torch.set_num_threads(old_threads)
        dense.train(dense_was)
        compressed.train(comp_was)


def _timed(
    runtime: str, bn: str, dense: Forward, comp: Forward, x: torch.Tensor, runs: int, warmup: int
) -> dict[str, Any]:
    dense_ms = time_forward(dense, x, runs=runs, warmup=warmup)
    comp_ms = time_forward(comp, x, runs=runs, warmup=warmup)
    return {
        "runtime": runtime,
        "batchnorm": bn,
        "dense_ms": dense_ms,
        "compressed_ms": comp_ms,
        "speedup": dense_ms / comp_ms if comp_ms > 0 else None,
        "note": None,
    }


def _missing_row(note: str) -> dict[str, Any]:
    return {
        "runtime": "onnxruntime",
        "batchnorm": "folded",
        "dense_ms": None,
        "compressed_ms": None,
        "speedup": None,
        "note": note,
    }
