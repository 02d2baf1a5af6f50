"""Assemble the report document: dense vs compressed headline, ratios, tables and history.

Every renderer (terminal, JSON, Markdown, HTML) and every CI gate reads the same plain dict
produced here, so what a gate checks is exactly what the JSON shows. The dense baseline is the
checkpoint's ModelSpec built fresh, i.e. the original architecture before any thinning.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunecli.errors import CheckpointError, PruneCliError, SourceLocation
from prunecli.report.compute import LayerCompute, compute_summary
from prunecli.report.quantization import bits_by_tensor, quantization_section
from prunecli.report.rounding import rounding_rows
from prunecli.report.sparsity import sparsity_table
from prunecli.rundir import CHECKPOINTS, RunDir

SCHEMA_VERSION = 1


@dataclass
class ReportOptions:
    latency: bool = True
    #: also time both models with BatchNorm folded and in ONNX Runtime (``latency_table``)
    deployed_latency: bool = True
    latency_runs: int = 20
    latency_warmup: int = 3
    batch_size: int = 1
    threads: int | None = None
    device: str = "cpu"
    evaluate: str | None = None  # data set name: evaluate the compressed model on its test split
    data_dir: str | None = None
    eval_batch_size: int = 256
    max_batches: int | None = None


@dataclass
class ReportInputs:
    """Everything the report is computed from, already loaded (tests build these directly)."""

    model: nn.Module  # the compressed model as stored (thinned and/or masked)
    dense: nn.Module  # the same architecture built fresh, unthinned
    input_shape: tuple[int, ...]  # one sample, (C, H, W)
    payload: dict[str, Any] = field(default_factory=dict)  # the checkpoint dict
    source_kind: str = "checkpoint"  # "checkpoint" | "run_dir" | "inputs"
    source_path: str | None = None
    checkpoint_path: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    schedule_text: str | None = None
    dataset: str | None = None
    #: an iterative run's iteration table (:meth:`prunecli.rundir.RunDir.read_iterations`)
    iterative: dict[str, Any] | None = None
    #: the int8 model an int8 checkpoint stores (``model`` is then its float twin: BatchNorm
    #: folded, dequantized weights, for the tables)
    int8: nn.Module | None = None


# --------------------------------------------------------------------------- loading


def _pick_run_checkpoint(run_dir: RunDir) -> Path:
    present = run_dir.present_checkpoints()
    if present:
        return present[0]
    raise CheckpointError(
        f"run directory {run_dir.path} holds no checkpoint ({', '.join(CHECKPOINTS)})",
        location=SourceLocation(str(run_dir.path)),
        hint="point the report at a finished run directory or at a checkpoint file",
    )


def _input_shape(spec: Any, payload: dict[str, Any]) -> tuple[int, ...]:
    """One sample's shape: as the run trained it or the spec records it, else the model zoo's default."""
    extras = payload.get("extras")
    for holder in (extras if isinstance(extras, dict) else {}, spec, payload.get("model") or {}):
        shape = (
            holder.get("input_shape") if isinstance(holder, dict) else getattr(holder, "input_shape", None)
        )
        if shape:
            return tuple(int(s) for s in shape)[-3:] if len(shape) == 4 else tuple(int(s) for s in shape)
    from prunecli.models import default_input_shape

    dataset = getattr(spec, "dataset", None) or (payload.get("model") or {}).get("dataset")
    return tuple(default_input_shape(spec, dataset)[1:])  # always (1, ...): drop the batch


def _dense_baseline(payload: dict[str, Any], model_spec: str | None) -> tuple[nn.Module, Any]:
    """The checkpoint's architecture built fresh: from ``--model`` when given, else the stored spec.

    A converted Distiller checkpoint records only its ``arch`` and ``dataset`` (in
    ``extras.distiller``); those are used when there is no stored spec.
    """
    from prunecli.models import ModelSpec, create_model

    origin = (payload.get("extras") or {}).get("distiller") or {}
    dataset = (payload.get("model") or {}).get("dataset") or origin.get("dataset")
    if model_spec is not None:
        return create_model(model_spec, dataset=dataset)
    if isinstance(payload.get("model"), dict):
        spec = ModelSpec.from_dict(payload["model"])
        return spec.build(), spec
    if isinstance(origin.get("arch"), str):
        return create_model(origin["arch"], dataset=dataset)
    raise CheckpointError(
        "the checkpoint records no model description, so the dense baseline cannot be built",
        hint="name the architecture with --model (e.g. --model resnet20_cifar)",
    )


def load_inputs(
    source: str | os.PathLike, *, checkpoint: str | None = None, model_spec: str | None = None
) -> ReportInputs:
    """Read a checkpoint file or a run directory through :mod:`prunecli.checkpoint`."""
    from prunecli.checkpoint import load_checkpoint, load_model
    from prunecli.checkpoint.model import resolve
    from prunecli.quantization.int8 import Int8Model

    path = Path(source)
    if not path.exists():
        raise PruneCliError(
            f"no such checkpoint or run directory: {path}",
            hint="pass a checkpoint file (.pt) or a run directory written by `prunecli run`",
        )
    run_dir = RunDir(path) if path.is_dir() else None
    ckpt = (run_dir.path / checkpoint if checkpoint else _pick_run_checkpoint(run_dir)) if run_dir else path
    if not ckpt.is_file():
        raise CheckpointError(f"checkpoint {ckpt} not found", hint="check the --checkpoint name")
    payload = load_checkpoint(ckpt)
    model = load_model(ckpt, model=model_spec)  # refuses user code unless --model names it
    int8 = None
    if isinstance(model, Int8Model):
        int8, model = model, resolve(ckpt, model=model_spec)[0].eval()
    dense, spec = _dense_baseline(payload, model_spec)

    history = list(payload.get("metrics") or [])
    schedule_text = payload.get("schedule_text")
    iterative = None
    if run_dir is not None:
        if run_dir.metrics.is_file():
            history = run_dir.read_metrics()
        schedule_text = schedule_text or run_dir.read_schedule_text()
        iterative = run_dir.read_iterations()
    if not isinstance(payload.get("model"), dict):
        payload = {**payload, "model": spec.to_dict()}
    return ReportInputs(
        model=model,
        dense=dense,
        input_shape=_input_shape(spec, payload),
        payload=payload,
        source_kind="run_dir" if run_dir else "checkpoint",
        source_path=str(path),
        checkpoint_path=str(ckpt),
        history=history,
        schedule_text=schedule_text,
        dataset=spec.dataset,
        iterative=iterative,
        int8=int8,
    )


# --------------------------------------------------------------------------- measuring


def _state_dict_bytes(model: nn.Module) -> int:
    """Serialized size of the weights alone, so dense and compressed compare like for like."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def _int8_serialized_bytes(payload: dict[str, Any]) -> int:
    """Serialized size of an int8 checkpoint's model: its float tensors and the int8 record."""
    from prunecli.quantization.stored import INT8_KEY

    buf = io.BytesIO()
    torch.save({"state_dict": payload["state_dict"], INT8_KEY: payload["extras"][INT8_KEY]}, buf)
    return buf.tell()


def _param_counts(model: nn.Module) -> tuple[int, int]:
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(int((p != 0).sum()) for p in params)


def _side(model: nn.Module, layers: list[LayerCompute]) -> dict[str, Any]:
    params, nnz = _param_counts(model)
    return {
        "params": params,
        "nnz_params": nnz,
        "macs": sum(r.macs for r in layers),
        "effective_macs": sum(r.effective_macs for r in layers),
        "state_dict_bytes": _state_dict_bytes(model),
        "file_bytes": None,
        "latency_ms": None,
        "top1": None,
        "top5": None,
        "loss": None,
    }


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or not den else num / den


def _compute_rows(dense: list[LayerCompute], comp: list[LayerCompute]) -> list[dict[str, Any]]:
    """Per-layer compute of the compressed model, with the same layer's dense MACs alongside."""
    dense_by_name = {r.name: r for r in dense}
    rows = []
    for r in comp:
        d = r.as_dict()
        base = dense_by_name.get(r.name)
        d["dense_macs"] = base.macs if base else None
        d["dense_weights_volume"] = base.weights_volume if base else None
        rows.append(d)
    return rows


def _last_metrics(history: list[dict[str, Any]], epoch: int | None) -> dict[str, Any]:
    """The metrics row of the checkpoint's epoch, or the last row that has an accuracy."""
    with_acc = [h for h in history if h.get("top1") is not None]
    if epoch is not None:
        match = [h for h in with_acc if h.get("epoch") == epoch]
        if match:
            return match[-1]
    return with_acc[-1] if with_acc else {}


def _evaluate_on(model: nn.Module, options: ReportOptions) -> dict[str, Any]:
    from prunecli.data import load_dataset
    from prunecli.report.evaluate import eval_loader, evaluate

    bundle = load_dataset(options.evaluate, options.data_dir)
    loader = eval_loader(bundle.test, options.eval_batch_size)
    result = evaluate(model, loader, max_batches=options.max_batches)
    return result.as_dict()


def _agp_curves(schedule_text: str | None) -> list[dict[str, Any]]:
    if not schedule_text:
        return []
    try:
        from prunecli.schedule import load_schedule
        from prunecli.schedule.timeline import agp_curves

        schedule = load_schedule("schedule.yaml", text=schedule_text)
        return agp_curves(schedule)
    except (ImportError, AttributeError):
        return []


def _settings(options: ReportOptions) -> dict[str, Any]:
    return {
        "latency_runs": options.latency_runs if options.latency else 0,
        "latency_warmup": options.latency_warmup,
        "batch_size": options.batch_size,
        "threads": options.threads,
        "device": options.device,
        "evaluate": options.evaluate,
        "max_batches": options.max_batches,
    }


def assemble_report(inputs: ReportInputs, options: ReportOptions | None = None) -> dict[str, Any]:
    """Compute the whole report document from already-loaded inputs."""
    options = options or ReportOptions()
    x = torch.zeros(1, *inputs.input_shape)
    comp_layers = compute_summary(inputs.model, x)
    dense_layers = compute_summary(inputs.dense, x)
    dense, comp = _side(inputs.dense, dense_layers), _side(inputs.model, comp_layers)
    if inputs.int8 is not None:
        comp["state_dict_bytes"] = _int8_serialized_bytes(inputs.payload)
    if inputs.checkpoint_path and os.path.isfile(inputs.checkpoint_path):
        comp["file_bytes"] = os.path.getsize(inputs.checkpoint_path)

    if options.latency:
        dense["latency_ms"] = _median_ms(inputs.dense, inputs, options, options.device)
        # an int8 checkpoint's compressed model is its int8 model, which runs on CPU kernels
        if inputs.int8 is not None:
            comp["latency_ms"] = _median_ms(inputs.int8, inputs, options, "cpu")
        else:
            comp["latency_ms"] = _median_ms(inputs.model, inputs, options, options.device)

    deployed = _deployment_latency(inputs, options)

    epoch = inputs.payload.get("epoch")
    extras = inputs.payload.get("extras") or {}
    accuracy_source = None
    final_test = extras.get("test") if isinstance(extras.get("test"), dict) else {}
    if options.evaluate:
        # an int8 checkpoint's model is the int8 one
        result = _evaluate_on(inputs.int8 if inputs.int8 is not None else inputs.model, options)
        comp.update(top1=result["top1"], top5=result["top5"], loss=result["loss"])
        accuracy_source = f"evaluate:{options.evaluate}"
    elif final_test.get("top1") is not None:
        # the run's final test-split evaluation: the same split as the dense baseline's
        comp.update(top1=final_test["top1"], top5=final_test.get("top5"), loss=final_test.get("loss"))
        accuracy_source = "checkpoint:test"
    else:
        last = _last_metrics(inputs.history, epoch)
        if last:
            comp.update(top1=last.get("top1"), top5=last.get("top5"), loss=last.get("val_loss"))
            accuracy_source = f"metrics:epoch {last.get('epoch')}"
        elif extras.get("source") == "distiller" and isinstance(extras.get("current_top1"), int | float):
            # Distiller saves the last validation top-1, in percent
            comp["top1"] = extras["current_top1"] / 100.0
            accuracy_source = "distiller:current_top1"
    dense["top1"], dense["top5"] = extras.get("baseline_top1"), extras.get("baseline_top5")
    # language models: exp(mean cross-entropy per token), from the final test or the last epoch
    last_row = _last_metrics(inputs.history, epoch) or {}
    comp["perplexity"] = final_test.get("perplexity", last_row.get("perplexity"))
    dense["perplexity"] = extras.get("baseline_perplexity")

    quantization = _quantization(inputs, options, x, comp, final_test)
    table = sparsity_table(inputs.model, bits=bits_by_tensor(quantization))
    spec = inputs.payload.get("model") or {}
    return {
        "schema_version": SCHEMA_VERSION,
        "generator": {"name": "prunecli", "version": _version()},
        "source": {
            "kind": inputs.source_kind,
            "path": inputs.source_path,
            "checkpoint": inputs.checkpoint_path,
            "epoch": epoch,
            "accuracy_from": accuracy_source,
        },
        "model": {
            "name": spec.get("name") or type(inputs.model).__name__,
            "spec": spec,
            "input_shape": list(inputs.input_shape),
            "dataset": inputs.dataset,
        },
        "top1": comp["top1"],
        "top5": comp["top5"],
        "perplexity": comp["perplexity"],
        "sparsity": table.total_sparsity,
        "params_ratio": _ratio(comp["params"], dense["params"]),
        "nnz_params_ratio": _ratio(comp["nnz_params"], dense["params"]),
        "macs_ratio": _ratio(comp["macs"], dense["macs"]),
        "effective_macs_ratio": _ratio(comp["effective_macs"], dense["macs"]),
        "size_ratio": _ratio(comp["state_dict_bytes"], dense["state_dict_bytes"]),
        "latency_ratio": _ratio(comp["latency_ms"], dense["latency_ms"]),
        "speedup": _ratio(dense["latency_ms"], comp["latency_ms"]),
        "latency_table": deployed,
        "top1_delta": None if comp["top1"] is None or dense["top1"] is None else comp["top1"] - dense["top1"],
        "headline": {"dense": dense, "compressed": comp},
        "settings": _settings(options),
        "sparsity_table": table.as_dict(),
        "compute": _compute_rows(dense_layers, comp_layers),
        "history": inputs.history,
        "schedule": {"text": inputs.schedule_text, "agp": _agp_curves(inputs.schedule_text)},
        "thinning": _thinning(inputs.payload),
        "channel_rounding": rounding_rows(inputs.schedule_text, inputs.model, inputs.dense),
        "iterative": _iterative(inputs.iterative),
        "quantization": quantization,
    }


def _quantization(
    inputs: ReportInputs,
    options: ReportOptions,
    example: torch.Tensor,
    comp: dict[str, Any],
    final_test: dict[str, Any],
) -> dict[str, Any] | None:
    """The quantization section (None without a plan); see :mod:`prunecli.report.quantization`."""

    def latency(model: nn.Module) -> float:
        # the int8 kernels are CPU kernels; the float side runs there too
        return _median_ms(model, inputs, options, "cpu")

    stored = inputs.int8 is not None
    # the float accuracy: the compressed float model's own, or (int8 file) the run's recorded test
    fp32_top1 = final_test.get("top1") if stored else comp.get("top1")
    return quantization_section(
        payload=inputs.payload,
        model=inputs.model,
        dense=inputs.dense,
        int8=inputs.int8,  # type: ignore[arg-type]
        example=example,
        latency=latency if options.latency else None,
        evaluate=(lambda model: _evaluate_on(model, options)) if options.evaluate else None,
        fp32_top1=fp32_top1,
    )


def _median_ms(model: nn.Module, inputs: ReportInputs, options: ReportOptions, device: str) -> float:
    """Median latency of ``model`` with the report's batch, runs, warm-up and threads."""
    from prunecli.report.latency import measure_latency

    return measure_latency(
        model,
        inputs.input_shape,
        batch_size=options.batch_size,
        runs=options.latency_runs,
        warmup=options.latency_warmup,
        threads=options.threads,
        device=device,
    ).median_ms


def _deployment_latency(inputs: ReportInputs, options: ReportOptions) -> list[dict[str, Any]] | None:
    """Dense vs compressed latency with BatchNorm folded, and in ONNX Runtime (CPU runs only)."""
    from prunecli.devices import resolve_device

    if not (options.latency and options.deployed_latency) or resolve_device(options.device).type != "cpu":
        return None
    from prunecli.report.deploy_latency import latency_table

    return latency_table(
        inputs.dense,
        inputs.model,
        inputs.input_shape,
        batch_size=options.batch_size,
        runs=options.latency_runs,
        warmup=options.latency_warmup,
        threads=options.threads,
    )


def _thinning(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint's thinning recipe in figures: channels removed and each verification's result."""
    recipe = payload.get("recipe")
    if not isinstance(recipe, dict):
        return None
    checks = [c for c in recipe.get("checks", []) if isinstance(c, dict)]
    return {"removed_channels": int(recipe.get("removed_channels", 0)), "checks": checks}


def _iterative(table: dict[str, Any] | None) -> dict[str, Any] | None:
    """The iteration table of an iterative run, with each row's place on the Pareto front."""
    if table is None:
        return None
    from prunecli.report.pareto import pareto_front

    metric = "latency_ms" if str(table.get("budget") or "").startswith("latency_ms") else "macs"
    rows = [dict(row) for row in table["iterations"]]
    front = set(pareto_front([(row.get(metric), row.get("score")) for row in rows]))
    for index, row in enumerate(rows):
        row["pareto"] = index in front
        row["best"] = row.get("iteration") == table.get("best")
    return {**table, "cost": metric, "iterations": rows}


def _version() -> str:
    import prunecli

    return prunecli.__version__


def build_report(
    source: str | os.PathLike,
    options: ReportOptions | None = None,
    *,
    checkpoint: str | None = None,
    model_spec: str | None = None,
) -> dict[str, Any]:
    """The report of a checkpoint file or a run directory (see docs/report.md for every field)."""
    return assemble_report(load_inputs(source, checkpoint=checkpoint, model_spec=model_spec), options)
