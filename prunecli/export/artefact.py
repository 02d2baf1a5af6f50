"""Export a model (or a checkpoint's model) to a deployable artefact that is verified before it is kept.

The artefact is written into a private temporary directory, loaded back by its own runtime and compared
with the eager PyTorch model on fresh random inputs; only when it agrees within the tolerance are its
bytes published at the requested path (atomically: temporary file, fsync, rename). A failed export or
verification leaves no file behind and raises :class:`ExportError` naming the layer at fault.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunecli.errors import CheckpointError, ExportError, PruneCliError, SourceLocation

from .fold import FoldResult, fold_batchnorm
from .formats import ExportOptions, get_exporter
from .verify import compare, find_failing_layer, first_line, verification_inputs

DEFAULT_TOLERANCE = 1e-4


@dataclass
class ExportReport:
    """What was written and how well it agrees with the PyTorch model (plain data via ``to_dict``)."""

    format: str
    output: str
    file_bytes: int
    export_seconds: float
    verify_seconds: float
    max_error: float
    tolerance: float
    verified_inputs: list[list[int]]
    opset: int | None
    dynamic_batch: bool
    folded_batchnorms: int
    fold: dict[str, Any] | None = None
    params: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _export_example(example: torch.Tensor, dynamic_batch: bool) -> torch.Tensor:
    # a batch of 1 would let torch.export specialise the batch dimension to the constant 1
    if dynamic_batch and example.shape[0] == 1:
        return torch.randn((2, *example.shape[1:]), dtype=example.dtype)
    return example


def export_model(
    model: nn.Module,
    example_input: torch.Tensor,
    output: str | Path,
    *,
    format: str,
    opset: int | None = None,
    dynamic_batch: bool = False,
    fold_bn: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ExportReport:
    """Write ``model`` as ``format`` to ``output`` after checking the artefact reproduces its outputs.

    ``model`` is put in eval mode and is not otherwise changed (folding works on a copy). The comparison
    is against the unfolded model, so it checks the folding as well as the export.
    """
    from prunecli.checkpoint.atomic import atomic_write

    exporter = get_exporter(format)
    options = ExportOptions(opset=opset, dynamic_batch=dynamic_batch)
    exporter.check_available()
    exporter.check_options(options)
    if not tolerance > 0:
        raise ExportError(
            f"the tolerance must be positive (got {tolerance})", hint="pass a --tolerance above 0"
        )
    model.eval()
    example = _export_example(example_input, dynamic_batch)
    folding: FoldResult | None = fold_batchnorm(model, example) if fold_bn else None
    target = folding.model if folding is not None else model
    inputs = verification_inputs(example, dynamic_batch)
    out = Path(output)
    workdir = Path(tempfile.mkdtemp(prefix="prunecli-export-"))
    try:
        staged = workdir / f"model{exporter.suffix}"
        start = time.perf_counter()
        try:
            exporter.write(target, example, staged, options)
        except PruneCliError:
            raise
        except Exception as exc:  # the exporters raise many exception types
            raise _layer_error(
                exporter.name, target, example, options, tolerance, first_line(exc), False
            ) from None
        export_seconds = time.perf_counter() - start
        start = time.perf_counter()
        try:
            runner = exporter.load(staged)
        except Exception as exc:
            raise _layer_error(
                exporter.name, target, example, options, tolerance, first_line(exc), False
            ) from None
        try:
            result = compare(model, runner, inputs)
        except Exception as exc:
            raise _layer_error(
                exporter.name, target, example, options, tolerance, first_line(exc), True
            ) from None
        verify_seconds = time.perf_counter() - start
        if not result.passed(tolerance):
            what = result.problem or f"relative error {result.max_error:.2e} > tolerance {tolerance:.0e}"
            raise _layer_error(exporter.name, target, example, options, tolerance, what, True)
        data = staged.read_bytes()
        try:
            atomic_write(out, lambda fh: fh.write(data), pause_as="export_write")
        except CheckpointError as exc:
            raise ExportError(exc.message, hint=exc.hint) from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return ExportReport(
        format=exporter.name,
        output=str(out),
        file_bytes=len(data),
        export_seconds=round(export_seconds, 4),
        verify_seconds=round(verify_seconds, 4),
        max_error=result.max_error,
        tolerance=tolerance,
        verified_inputs=[list(x.shape) for x in inputs],
        opset=(opset or _default_opset()) if exporter.name == "onnx" else None,
        dynamic_batch=dynamic_batch,
        folded_batchnorms=len(folding.pairs) if folding is not None else 0,
        fold=folding.to_dict() if folding is not None else None,
        params=sum(p.numel() for p in target.parameters()),
    )


def _default_opset() -> int:
    from .formats import ONNX_DEFAULT_OPSET

    return ONNX_DEFAULT_OPSET


def _layer_error(
    fmt: str,
    model: nn.Module,
    example: torch.Tensor,
    options: ExportOptions,
    tolerance: float,
    what: str,
    exported: bool,
) -> ExportError:
    """An ExportError naming the narrowest sub-module that fails on its own (searched only after a failure)."""
    failure = f"the {fmt} artefact does not reproduce the model" if exported else f"the {fmt} export failed"
    culprit = find_failing_layer(get_exporter(fmt), model, example, options, tolerance)
    if culprit is not None:
        layer, why = culprit
        where = f"layer '{layer}': {why}"
    else:
        where = f"every sub-module exports correctly on its own, so the cause is in {type(model).__name__}.forward"
    return ExportError(f"{failure}: {where} (whole model: {what}); no file was written", hint=_hint(fmt))


def _hint(fmt: str) -> str:
    others = "exported-program or torchscript" if fmt == "onnx" else "onnx"
    return f"replace that operation in the model, try another --opset (ONNX only), or try --format {others}"


def default_output_path(checkpoint: Path, fmt: str) -> Path:
    """``run/compact.pt`` -> ``run/compact.onnx`` (the format's usual suffix)."""
    suffix = get_exporter(fmt).suffix
    name = checkpoint.name[: -len(".pt")] if checkpoint.name.endswith(".pt") else checkpoint.name
    return checkpoint.with_name(name + suffix)


def load_for_export(
    checkpoint: str | Path, *, model_spec: str | None = None, input_shape: tuple[int, ...] | None = None
) -> tuple[nn.Module, torch.Tensor]:
    """The checkpoint's model (thinned shapes, weights loaded, eval mode) and a random example input."""
    from prunecli.checkpoint import load_checkpoint, load_model
    from prunecli.checkpoint.model import example_input_shape

    path = Path(checkpoint)
    data = load_checkpoint(path)
    try:
        model = load_model(path, model=model_spec)
    except PruneCliError:
        raise
    except Exception as exc:  # building user or zoo code can fail in any way
        raise CheckpointError(
            f"the checkpoint's model cannot be rebuilt ({first_line(exc)})",
            location=SourceLocation(str(path)),
            hint="pass the architecture it was trained with, e.g. --model resnet20_cifar",
        ) from None
    if input_shape is None:
        input_shape = example_input_shape(data, path, model=model_spec)
    torch.manual_seed(0)
    return model.eval(), torch.randn(input_shape)
