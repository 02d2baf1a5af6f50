"""The run directory: where a run's checkpoints, metrics, log and resolved inputs live.

Layout (read by ``prunecli.report`` and by ``--resume``)::

    RUN_DIR/checkpoint.pt  best.pt  compact.pt  metrics.jsonl  run.log
            config.yaml (resolved)  schedule.yaml (copy)  report.json
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from prunecli.checkpoint.atomic import atomic_write, os_error_to_checkpoint_error
from prunecli.errors import ConfigError

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
COMPACT = "compact.pt"
METRICS = "metrics.jsonl"
LOG = "run.log"
CONFIG = "config.yaml"
SCHEDULE = "schedule.yaml"
REPORT = "report.json"

LOGGER_NAME = "prunecli"


def new_run_dir(out_dir: str | None, runs_dir: str, name: str) -> Path:
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
    return path


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` all at once; a full disk raises a clear error and keeps the old file."""
    data = text.encode("utf-8")
    atomic_write(path, lambda handle: handle.write(data))


def write_yaml(path: Path, data: Any) -> None:
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))


def write_metrics(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Rewrite the whole file (used on resume so no epoch appears twice)."""
    write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


def append_metrics(path: Path, row: dict[str, Any]) -> None:
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
    except OSError as exc:
        raise os_error_to_checkpoint_error(exc, path, had_previous=True) from exc
        handle.flush()
        os.fsync(handle.fileno())


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def link_or_copy(source: Path, target: Path) -> None:
    """Make ``target`` hold ``source``'s bytes atomically; a hard link costs no I/O.

    ``checkpoint.pt`` is always replaced by rename, so a linked ``best.pt`` keeps the old contents.
    """
    tmp = target.with_name(f".{target.name}.tmp")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def attach_log_file(path: Path) -> logging.Handler:
    """Send everything prunecli logs during the run to ``run.log``."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    logging.getLogger(LOGGER_NAME).removeHandler(handler)
    handler.close()
