"""`prunecli report`: dense vs compressed summary of a checkpoint or run directory, with CI gates."""

from __future__ import annotations

from pathlib import Path

import click

from prunecli.cli.console import console, err_console
from prunecli.errors import PruneCliError


@click.command("report")
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--checkpoint",
    "checkpoint_name",
    help="Checkpoint file inside a run directory (default: compact.pt, checkpoint.pt, best.pt).",
)
@click.option(
    "--model",
    "model_spec",
    metavar="SPEC",
    help="Model spec for checkpoints without one (weights-only, Distiller) or defined by user code.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document (schema: docs/report-schema.json)."
)
@click.option("--markdown", is_flag=True, help="Print the report as Markdown.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a self-contained HTML page with plots.",
)
@click.option(
    "--fail-if",
    "gates",
    multiple=True,
    metavar="'FIELD OP NUMBER'",
    help='Exit 1 when the comparison is true, e.g. "macs_ratio > 0.6". Repeatable.',
)
@click.option(
    "--evaluate",
    "dataset",
    metavar="DATASET",
    help="Evaluate the compressed model on this data set's test split.",
)
@click.option("--data-dir", type=click.Path(path_type=Path), help="Where --evaluate finds the data set.")
@click.option("--max-batches", type=click.IntRange(min=1), help="Evaluate on at most N test batches.")
@click.option("--eval-batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option(
    "--latency/--no-latency", default=True, show_default=True, help="Measure median inference latency."
)
@click.option(
    "--deployed-latency/--no-deployed-latency",
    default=True,
    show_default=True,
    help="Also time both models with BatchNorm folded, and in ONNX Runtime when installed (CPU).",
)
@click.option("--latency-runs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=1, show_default=True, help="Batch size for latency."
)
@click.option("--threads", type=click.IntRange(min=1), help="torch intra-op threads for latency.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--brief", is_flag=True, help="Terminal output: headline and ratios only.")
def command(
    source: Path,
    checkpoint_name: str | None,
    model_spec: str | None,
    as_json: bool,
    markdown: bool,
    html_file: Path | None,
    gates: tuple[str, ...],
    dataset: str | None,
    data_dir: Path | None,
    max_batches: int | None,
    eval_batch_size: int,
    latency: bool,
    deployed_latency: bool,
    latency_runs: int,
    warmup: int,
    batch_size: int,
    threads: int | None,
    device: str,
    brief: bool,
) -> None:
    """Report parameters, MACs, size, latency, accuracy and sparsity of SOURCE against its dense baseline.

    SOURCE is a checkpoint file or a run directory written by `prunecli run`.
    """
    from prunecli.report.build import ReportOptions, build_report
    from prunecli.report.gates import enforce_gates, evaluate_gates, parse_gate
    from prunecli.report.render import print_terminal, to_json, to_markdown

    if as_json and markdown:
        raise PruneCliError("--json and --markdown are exclusive", hint="choose one output format")
    for g in gates:  # refuse malformed gates before the (slow) measurements
        parse_gate(g)
    options = ReportOptions(
        latency=latency,
        deployed_latency=deployed_latency,
        latency_runs=latency_runs,
        latency_warmup=warmup,
        batch_size=batch_size,
        threads=threads,
        device=device,
        evaluate=dataset,
        data_dir=str(data_dir) if data_dir else None,
        eval_batch_size=eval_batch_size,
        max_batches=max_batches,
    )
    report = build_report(source, options, checkpoint=checkpoint_name, model_spec=model_spec)
    results = evaluate_gates(report, gates)

    if html_file is not None:
        from prunecli.report.html import to_html

        html_file.parent.mkdir(parents=True, exist_ok=True)
        html_file.write_text(to_html(report), encoding="utf-8")
    if as_json:
        click.echo(to_json(report))
    elif markdown:
        click.echo(to_markdown(report), nl=False)
    else:
        print_terminal(report, console, full=not brief)
    notes = err_console if as_json or markdown else console
    if html_file is not None:
        notes.print(f"HTML report written to {html_file}")
    for r in results:
        if not r.failed:
            notes.print(f"gate {r.render()}", highlight=False)
    enforce_gates(results)
