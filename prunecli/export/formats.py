"""One exporter per artefact format, registered by name: how to write it and how to run it back.

Each exporter writes ``model`` (eval mode) to a path and loads that file with the runtime a user would
deploy it with (ONNX Runtime, ``torch.jit.load``, ``torch.export.load``), returning a callable from an
input tensor to a flat list of output tensors. Verification (``prunecli.export.verify``) only needs
this pair, so adding a format is adding one class here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from prunecli.errors import ExportError

Runner = Callable[[torch.Tensor], list[torch.Tensor]]

#: ONNX opsets written by torch's TorchScript-based ONNX exporter (fast; used up to its maximum);
#: newer opsets are written by the torch.export-based exporter, which also takes over (from opset 18,
#: its oldest) when the TorchScript-based one cannot express an operation.
ONNX_MIN_OPSET = 7
ONNX_TORCHSCRIPT_MAX_OPSET = 20
ONNX_DYNAMO_MIN_OPSET = 18
ONNX_DEFAULT_OPSET = 18
EXTRA_HINT = 'install the optional export dependencies: pip install -e ".[export]"'


@dataclass(frozen=True)
class ExportOptions:
    """Settings shared by every format; a format ignores what does not apply to it."""

    opset: int | None = None
    dynamic_batch: bool = False


def flatten_outputs(value: Any) -> list[torch.Tensor]:
    """The tensors of a model's output in a fixed order (tensor, tuple/list, dict, named tuple)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for key in value for t in flatten_outputs(value[key])]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in flatten_outputs(item)]
    return []


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch's exporters print progress, deprecation notes and (from C++) whole graphs on failure;
    the command prints its own summary and error, so both Python's and the process's streams are muted."""
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        with _muted_fd(1), _muted_fd(2):
            yield


@contextlib.contextmanager
def _muted_fd(fd: int) -> Iterator[None]:
    try:
        saved = os.dup(fd)
    except OSError:  # no such descriptor (embedded interpreters): nothing to mute
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        for stream in (sys.__stderr__, sys.__stdout__):  # buffered text must land in the muted descriptor
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(saved, fd)
        os.close(saved)


class Exporter:
    """Writes and reloads one artefact format."""

    name: ClassVar[str]
    suffix: ClassVar[str]
    #: Python modules the format needs beyond torch (an optional extra)
    requires: ClassVar[tuple[str, ...]] = ()

    def check_available(self) -> None:
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise ExportError(
                f"exporting to {self.name} needs the Python package(s) {', '.join(missing)}, "
                "which are not installed",
                hint=EXTRA_HINT,
            )

    def check_options(self, options: ExportOptions) -> None:
        """Refuse settings this format cannot honour, before any work is done."""

    def write(self, model: nn.Module, example: torch.Tensor, path: Path, options: ExportOptions) -> None:
        raise NotImplementedError

    def load(self, path: Path) -> Runner:
        raise NotImplementedError


def _batch_dim() -> Any:
    return torch.export.Dim("batch", min=1, max=4096)


class OnnxExporter(Exporter):
    name = "onnx"
    suffix = ".onnx"
    requires = ("onnx", "onnxruntime")

    @staticmethod
    def max_opset() -> int:
        """The newest opset both the installed onnx package and torch's exporters can write."""
        import onnx
        import torch.onnx._constants as constants

        return min(onnx.defs.onnx_opset_version(), constants.ONNX_MAX_OPSET)

    def check_options(self, options: ExportOptions) -> None:
        opset = options.opset
        if opset is None:
            return
        newest = self.max_opset()
        if not ONNX_MIN_OPSET <= opset <= newest:
            raise ExportError(
                f"ONNX opset {opset} cannot be written here: the installed onnx "
                f"{_version('onnx')} and torch {torch.__version__} write opsets {ONNX_MIN_OPSET} to {newest}",
                hint=f"pass --opset between {ONNX_MIN_OPSET} and {newest} (default {ONNX_DEFAULT_OPSET})",
            )
        if opset > ONNX_TORCHSCRIPT_MAX_OPSET and importlib.util.find_spec("onnxscript") is None:
            raise ExportError(
                f"ONNX opset {opset} is written by torch's torch.export-based exporter, which needs onnxscript",
                hint=EXTRA_HINT + f", or pass --opset {ONNX_TORCHSCRIPT_MAX_OPSET} or lower",
            )

    def write(self, model: nn.Module, example: torch.Tensor, path: Path, options: ExportOptions) -> None:
        opset = options.opset or ONNX_DEFAULT_OPSET
        common: dict[str, Any] = {
            "input_names": ["input"],
            "opset_version": opset,
            "external_data": False,
        }
        with _quiet():
            if opset <= ONNX_TORCHSCRIPT_MAX_OPSET:
                n_out = len(flatten_outputs(_run(model, example)))
                names = [f"output{i}" if n_out > 1 else "output" for i in range(n_out)]
                axes = {name: {0: "batch"} for name in ["input", *names]} if options.dynamic_batch else None
                try:
                    torch.onnx.export(
                        model,
                        (example,),
                        str(path),
                        dynamo=False,
                        output_names=names,
                        dynamic_axes=axes,
                        **common,
                    )
                    return
                except Exception as first:
                    if opset < ONNX_DYNAMO_MIN_OPSET or importlib.util.find_spec("onnxscript") is None:
                        raise
                    try:
                        self._write_dynamo(model, example, path, options, common)
                    except Exception:
                        raise first from None  # it names the operation; the fallback's message does not
                    return
            self._write_dynamo(model, example, path, options, common)

    @staticmethod
    def _write_dynamo(
        model: nn.Module, example: torch.Tensor, path: Path, options: ExportOptions, common: dict[str, Any]
    ) -> None:
        shapes = ({0: _batch_dim()},) if options.dynamic_batch else None
        torch.onnx.export(model, (example,), str(path), dynamo=True, dynamic_shapes=shapes, **common)

    def load(self, path: Path) -> Runner:
        import onnxruntime as ort

        settings = ort.SessionOptions()
        settings.intra_op_num_threads = max(1, torch.get_num_threads())
        settings.log_severity_level = 3
        session = ort.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name

        def run(x: torch.Tensor) -> list[torch.Tensor]:
            outputs = session.run(None, {input_name: x.detach().cpu().numpy()})
            return [torch.from_numpy(o) for o in outputs]

        return run


class TorchScriptExporter(Exporter):
    name = "torchscript"
    suffix = ".ts"

    def write(self, model: nn.Module, example: torch.Tensor, path: Path, options: ExportOptions) -> None:
        with _quiet(), torch.no_grad():
            scripted = torch.jit.trace(model, (example,), check_trace=False)
            torch.jit.save(scripted, str(path))

    def load(self, path: Path) -> Runner:
        with _quiet():
            loaded = torch.jit.load(str(path), map_location="cpu").eval()

        def run(x: torch.Tensor) -> list[torch.Tensor]:
            with torch.no_grad():
                return flatten_outputs(loaded(x))

        return run


class ExportedProgramExporter(Exporter):
    name = "exported-program"
    suffix = ".pt2"

    def write(self, model: nn.Module, example: torch.Tensor, path: Path, options: ExportOptions) -> None:
        shapes = ({0: _batch_dim()},) if options.dynamic_batch else None
        with _quiet():
            program = torch.export.export(model, (example,), dynamic_shapes=shapes)
        torch.export.save(program, str(path))

    def load(self, path: Path) -> Runner:
        module = torch.export.load(str(path)).module()

        def run(x: torch.Tensor) -> list[torch.Tensor]:
            with torch.no_grad():
                return flatten_outputs(module(x))

        return run


def _run(model: nn.Module, x: torch.Tensor) -> Any:
    with torch.no_grad():
        return model(x)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "(not installed)"


FORMATS: dict[str, Exporter] = {
    e.name: e for e in (OnnxExporter(), TorchScriptExporter(), ExportedProgramExporter())
}


def get_exporter(name: str) -> Exporter:
    """The exporter registered as ``name``; ExportError listing the known formats otherwise."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ExportError(
            f"unknown export format {name!r}",
            hint=f"use --format with one of: {', '.join(FORMATS)}",
        ) from None
