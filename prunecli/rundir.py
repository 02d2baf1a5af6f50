"""The run directory: where a run's checkpoints, metrics, log and resolved inputs live.

``prunecli run`` writes it, ``prunecli report`` and ``--resume`` read it, and checkpoint errors name
its files in their hints; all of them go through :class:`RunDir`, so the file names and the
``metrics.jsonl`` format are written down here only. Layout::

    RUN_DIR/checkpoint.pt  best.pt  compact.pt  metrics.jsonl  run.log
            config.yaml (resolved)  schedule.yaml (copy)  report.json

An iterative run (a schedule with an ``iterative:`` section) keeps instead::

    RUN_DIR/iterative.json (the loop's state: spec, results, pending tasks, generator state)
            initial.pt  rewind.pt  dense.pt (weights at creation, at the rewind point, after pretraining)
            iterations/NN/compact.pt  iterations/NN/metrics.json   (one folder per finished iteration)
            best.pt (the best iteration meeting the budget)  report.json  report.html  run.log
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunecli.errors import ConfigError, PruneCliError, SourceLocation

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
COMPACT = "compact.pt"
METRICS = "metrics.jsonl"
LOG = "run.log"
CONFIG = "config.yaml"
SCHEDULE = "schedule.yaml"
REPORT = "report.json"
REPORT_HTML = "report.html"
ITERATIVE_STATE = "iterative.json"
ITERATIONS = "iterations"
ITERATION_CHECKPOINT = "compact.pt"
ITERATION_METRICS = "metrics.json"
INITIAL = "initial.pt"
REWIND = "rewind.pt"
DENSE = "dense.pt"
#: per-layer latencies measured once for a latency budget (see prunecli.iterative.latency_table)
LATENCY_TABLE = "latency_table.json"

#: The checkpoints a run directory may hold, most useful to a report first: the compact
#: (thinned, final) model, the last full checkpoint, then the best one.
CHECKPOINTS: tuple[str, ...] = (COMPACT, CHECKPOINT, BEST)

#: Logger whose records a run copies into ``run.log``.
LOGGER_NAME = "prunecli"


@dataclass(frozen=True)
class RunDir:
    """One run directory; every file of it is reached through a property named after its role."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # ------------------------------------------------------------------ creating
    @classmethod
    def create(
        cls, out_dir: str | os.PathLike[str] | None, runs_dir: str | os.PathLike[str], name: str
    ) -> RunDir:
        """``out_dir`` when given (must be empty or new), else ``runs_dir/<name>-<UTC timestamp>``."""
        if out_dir:
            path = Path(out_dir)
            if path.exists() and any(path.iterdir()):
                raise ConfigError(
                    f"output directory {path} is not empty",
                    hint=f"pick a new --out-dir, or continue that run with 'prunecli run --resume {path}'",
                )
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
            path = Path(runs_dir) / f"{name}-{stamp}"
            suffix = 1
            while path.exists():
                suffix += 1
                path = Path(runs_dir) / f"{name}-{stamp}-{suffix}"
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create run directory {path}: {exc.strerror}") from None
        return cls(path)

    # ------------------------------------------------------------------ files
    @property
    def checkpoint(self) -> Path:
        """The latest full state (replaced atomically every saved epoch); what ``--resume`` reads."""
        return self.path / CHECKPOINT

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def compact(self) -> Path:
        return self.path / COMPACT

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def log(self) -> Path:
        return self.path / LOG

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def schedule(self) -> Path:
        return self.path / SCHEDULE

    @property
    def report(self) -> Path:
        return self.path / REPORT

    @property
    def report_html(self) -> Path:
        return self.path / REPORT_HTML

    @property
    def latency_table(self) -> Path:
        """Measured per-layer latencies, reused by every later search step and by ``--resume``."""
        return self.path / LATENCY_TABLE

    # ------------------------------------------------------------------ iterative runs
    @property
    def iterative_state(self) -> Path:
        """The iterative loop's state, replaced atomically after every finished iteration."""
        return self.path / ITERATIVE_STATE

    @property
    def initial_weights(self) -> Path:
        """The dense model's weights at creation (the lottery ticket's reset point)."""
        return self.path / INITIAL

    @property
    def rewind_weights(self) -> Path:
        """The dense model's weights after ``rewind_epoch`` epochs (the late-rewind reset point)."""
        return self.path / REWIND

    @property
    def dense_model(self) -> Path:
        """The dense model the iterations start from (after pretraining)."""
        return self.path / DENSE

    def iteration(self, number: int) -> Path:
        """The folder of iteration ``number`` (``iterations/00``, ``iterations/01``, ...)."""
        return self.path / ITERATIONS / f"{number:02d}"

    def iteration_checkpoint(self, number: int) -> Path:
        return self.iteration(number) / ITERATION_CHECKPOINT

    def iteration_metrics(self, number: int) -> Path:
        return self.iteration(number) / ITERATION_METRICS

    def is_iterative(self) -> bool:
        return self.iterative_state.is_file()

    def read_iterative_state(self) -> dict[str, Any]:
        """The loop's state ({} when absent); a broken file is a located error."""
        if not self.iterative_state.is_file():
            return {}
        try:
            return json.loads(self.iterative_state.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise PruneCliError(
                f"iterative state is not valid JSON: {exc.msg}",
                location=SourceLocation(str(self.iterative_state), exc.lineno, exc.colno),
                hint="the file is written atomically; restore it from a backup or start a new run",
            ) from exc

    def read_iterations(self) -> dict[str, Any] | None:
        """An iterative run's table for reports: budget, best iteration, dense figures and one row
        per finished iteration (each ``iterations/NN/metrics.json``); None for other runs."""
        state = self.read_iterative_state()
        if not state:
            return None
        scheduler = state.get("scheduler") or {}
        rows = []
        for number in range(len(scheduler.get("results") or [])):
            path = self.iteration_metrics(number)
            if path.is_file():
                rows.append(json.loads(path.read_text(encoding="utf-8")))
        return {
            "budget": scheduler.get("budget", (state.get("spec") or {}).get("budget")),
            "best": scheduler.get("best"),
            "dense": state.get("dense") or {},
            "iterations": rows,
        }

    def present_checkpoints(self) -> list[Path]:
        """The checkpoints that exist, in :data:`CHECKPOINTS` order."""
        return [self.path / name for name in CHECKPOINTS if (self.path / name).is_file()]

    # ------------------------------------------------------------------ writing
    def write_text(self, path: Path, text: str) -> None:
        """Replace ``path`` all at once; a full disk raises a clear error and keeps the old file."""
        from prunecli.checkpoint.atomic import atomic_write

        data = text.encode("utf-8")
        atomic_write(path, lambda handle: handle.write(data))

    def write_config(self, resolved: dict[str, Any]) -> None:
        import yaml

        self.write_text(self.config, yaml.safe_dump(resolved, sort_keys=False))

    def write_schedule(self, text: str) -> None:
        self.write_text(self.schedule, text)

    def write_metrics(self, rows: Iterable[dict[str, Any]]) -> None:
        """Rewrite the whole file (used on resume so no epoch appears twice)."""
        self.write_text(self.metrics, "".join(json.dumps(row) + "\n" for row in rows))

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Add one epoch's line; it is on disk when this returns (an epoch is minutes of work)."""
        from prunecli.checkpoint.atomic import os_error_to_checkpoint_error

        try:
            with open(self.metrics, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise os_error_to_checkpoint_error(exc, self.metrics, had_previous=True) from exc

    def mark_best(self, source: Path | None = None) -> None:
        """Make ``best.pt`` hold ``source``'s bytes (default ``checkpoint.pt``) atomically; a hard
        link costs no I/O.

        ``source`` is never rewritten in place (``checkpoint.pt`` is replaced by rename, an
        iteration's checkpoint is written once), so a linked ``best.pt`` keeps its contents.
        """
        source = source or self.checkpoint
        tmp = self.best.with_name(f".{BEST}.tmp")
        if tmp.exists():
            tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, self.best)

    # ------------------------------------------------------------------ reading
    def read_metrics(self) -> list[dict[str, Any]]:
        """Every epoch row of ``metrics.jsonl`` ([] when absent); a broken line is a located error."""
        if not self.metrics.is_file():
            return []
        rows = []
        for lineno, line in enumerate(self.metrics.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise PruneCliError(
                    f"metrics file is not valid JSON lines: {exc.msg}",
                    location=SourceLocation(str(self.metrics), lineno, exc.colno),
                    hint=f"each line of {METRICS} must be one JSON object; remove the broken line",
                ) from exc
        return rows

    def read_schedule_text(self) -> str | None:
        return self.schedule.read_text(encoding="utf-8") if self.schedule.is_file() else None

    # ------------------------------------------------------------------ run.log
    def attach_log(self) -> logging.Handler:
        """Send everything prunecli logs during the run to ``run.log``."""
        handler = logging.FileHandler(self.log, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger(LOGGER_NAME)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        return handler

    @staticmethod
    def detach_log(handler: logging.Handler) -> None:
        logging.getLogger(LOGGER_NAME).removeHandler(handler)
        handler.close()
