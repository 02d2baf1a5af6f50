"""What a run shows while it works: a progress bar per epoch, one line per epoch, a final summary."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _int(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _ppl(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _perplexity(row: dict[str, Any]) -> str:
    """``ppl N  `` for a language model's row, nothing otherwise."""
    return f"ppl {_ppl(row['perplexity'])}  " if "perplexity" in row else ""


class Reporter:
    """Writes to a rich console; with ``quiet`` only warnings and the final summary appear."""

    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)

    @contextlib.contextmanager
    def epoch_progress(self, epoch: int, steps: int) -> Iterator[Any]:
        """Yields a ``(step, loss)`` callback that advances a transient bar."""
        if self.quiet or not self.console.is_terminal:
            yield None
            return
        progress = Progress(
            TextColumn(f"epoch {epoch}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        with progress:
            task = progress.add_task("train", total=steps, loss="-")

            def advance(step: int, loss: float) -> None:
                progress.update(task, completed=step + 1, loss=f"{loss:.4f}")

            yield advance

    def epoch_line(self, row: dict[str, Any]) -> None:
        self.info(
            f"epoch {row['epoch']:>3}  train_loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}  "
            f"top1 {_pct(row['top1'])}  {_perplexity(row)}sparsity {_pct(row['sparsity'])}  "
            f"params {_int(row['params'])}  MACs {_int(row['macs'])}  lr {row['lr']:.4g}  {row['time_s']:.1f}s"
        )

    def iteration_line(self, row: dict[str, Any], *, best: bool = False) -> None:
        """One finished iteration of an iterative run (a row of ``prunecli.iterative.store.iteration_row``)."""
        latency = f"latency {row['latency_ms']:.2f}ms  " if row.get("latency_ms") is not None else ""
        meets = "meets budget" if row["meets_budget"] else "over budget"
        self.info(
            f"iteration {row['iteration']:>2}  {row.get('note') or ''}  top1 {_pct(row['score'])}  "
            f"weights {row['weights']:.3f}  params {row['params']:.3f}  MACs {row['macs']:.3f}  "
            f"{latency}{meets}{'  (best)' if best else ''}  {row.get('time_s', 0.0):.1f}s"
        )

    def summary(self, result: Any) -> None:
        table = Table(title=f"run summary ({result.run_dir})", show_header=True)
        table.add_column("")
        table.add_column("dense", justify="right")
        table.add_column("compressed", justify="right")
        dense, comp = result.dense, result.compressed
        pre = result.pre_pruning or {}
        table.add_row("test top-1", _pct(pre.get("top1")), _pct(result.test.get("top1")))
        if "perplexity" in result.test:
            table.add_row("test perplexity", _ppl(pre.get("perplexity")), _ppl(result.test["perplexity"]))
        table.add_row("parameters", _int(dense.get("params")), _int(comp.get("params")))
        table.add_row("non-zero parameters", _int(dense.get("nnz_params")), _int(comp.get("nnz_params")))
        table.add_row("MACs", _int(dense.get("macs")), _int(comp.get("macs")))
        table.add_row(
            "checkpoint size (weights, bytes)",
            _int(dense.get("checkpoint_bytes")),
            _int(comp.get("checkpoint_bytes")),
        )
        self.console.print(table)
        if result.pre_pruning is not None:
            self.console.print(
                f"top-1 before pruning (epoch {pre.get('epoch')}): {_pct(pre.get('top1'))}; "
                f"at the end: {_pct(result.test.get('top1'))}; "
                f"MACs reduced by {_pct(result.macs_reduction)}",
                highlight=False,
                soft_wrap=True,
            )
