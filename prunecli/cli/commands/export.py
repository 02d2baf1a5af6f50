"""`prunecli export CHECKPOINT`: write the model as ONNX / TorchScript / an exported program, verified."""

from __future__ import annotations

import json
from pathlib import Path

import click

from prunecli.cli.console import console

from .deps import parse_input_shape

FORMAT_NAMES = ("onnx", "torchscript", "exported-program")


@click.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    required=True,
    metavar="|".join(FORMAT_NAMES),
    help="Artefact format: onnx (run by ONNX Runtime), torchscript, exported-program (torch.export).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: the checkpoint's name with .onnx / .ts / .pt2).",
)
@click.option("--opset", type=int, help="ONNX opset to write (default 18).")
@click.option("--dynamic-batch", is_flag=True, help="Let the batch dimension vary at run time.")
@click.option(
    "--fold-bn", is_flag=True, help="Fold each BatchNorm into the convolution/linear layer feeding it."
)
@click.option(
    "--model", "model_spec", metavar="MODEL", help="Architecture, when the checkpoint does not name it."
)
@click.option("--input-shape", help="Example batch shape, e.g. 1,3,32,32 (default: from the model).")
@click.option(
    "--tolerance",
    type=float,
    default=1e-4,
    show_default=True,
    help="Largest accepted difference from the PyTorch model, relative to its largest output magnitude.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def command(
    checkpoint: Path,
    fmt: str,
    output: Path | None,
    opset: int | None,
    dynamic_batch: bool,
    fold_bn: bool,
    model_spec: str | None,
    input_shape: str | None,
    tolerance: float,
    as_json: bool,
) -> None:
    """Export CHECKPOINT's (compact or dense) model, verify it with its runtime, then write it."""
    from prunecli.export import default_output_path, export_model, get_exporter, load_for_export

    get_exporter(fmt)  # an unknown format is refused before the checkpoint is read
    model, example = load_for_export(
        checkpoint, model_spec=model_spec, input_shape=parse_input_shape(input_shape)
    )
    out = output or default_output_path(checkpoint, fmt)
    report = export_model(
        model,
        example,
        out,
        format=fmt,
        opset=opset,
        dynamic_batch=dynamic_batch,
        fold_bn=fold_bn,
        tolerance=tolerance,
    )
    summary = {"input": str(checkpoint), "checkpoint_bytes": checkpoint.stat().st_size, **report.to_dict()}
    if as_json:
        click.echo(json.dumps(summary))
        return
    folded = f", {report.folded_batchnorms} BatchNorm(s) folded" if fold_bn else ""
    console.print(
        f"Exported {report.format} ({report.file_bytes:,} bytes, checkpoint {summary['checkpoint_bytes']:,} bytes)"
        f"{folded} in {report.export_seconds:.2f} s"
    )
    console.print(
        f"Verified on {len(report.verified_inputs)} random input(s): max relative difference "
        f"{report.max_error:.2e} (tolerance {report.tolerance:.0e})"
    )
    console.print(f"Wrote {report.output}")
