"""Deployment: fold BatchNorm into its producer and export verified ONNX / TorchScript / exported programs.

See docs/export.md. ``export_model`` does the work; ``prunecli export`` is a thin shell over it.
"""

from prunecli.export.artefact import (
    DEFAULT_TOLERANCE,
    ExportReport,
    default_output_path,
    export_model,
    load_for_export,
)
from prunecli.export.fold import FoldedPair, FoldResult, fold_batchnorm
from prunecli.export.formats import FORMATS, Exporter, ExportOptions, get_exporter

__all__ = [
    "DEFAULT_TOLERANCE",
    "FORMATS",
    "ExportOptions",
    "ExportReport",
    "Exporter",
    "FoldResult",
    "FoldedPair",
    "default_output_path",
    "export_model",
    "fold_batchnorm",
    "get_exporter",
    "load_for_export",
]
