"""Crash-safe file replacement: a reader sees either the old file or the complete new one.

The new content goes to a temporary file in the same directory (same file system, so the rename is
atomic), is flushed and fsynced, renamed over the target, and the directory entry is fsynced. If the
disk fills up or the directory is not writable, the temporary file is removed and the previous file
is left untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from prunecli.errors import CheckpointError

from .testhooks import pause_point

#: errno -> (what happened, how to fix it)
_OS_ERRORS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on device", "free space or use --out-dir to write elsewhere"),
    errno.EDQUOT: ("disk quota exceeded", "free space within your quota or use --out-dir to write elsewhere"),
    errno.EACCES: ("permission denied", "make the directory writable or use --out-dir to write elsewhere"),
    errno.EPERM: (
        "operation not permitted",
        "make the directory writable or use --out-dir to write elsewhere",
    ),
    errno.EROFS: ("read-only file system", "use --out-dir to write to a writable file system"),
    errno.ENOENT: ("the directory does not exist", "create the directory or use --out-dir"),
    errno.EIO: ("input/output error", "check the disk, then use --out-dir to write elsewhere"),
    errno.EFBIG: (
        "file too large (file-system or process file-size limit)",
        "raise the limit (ulimit -f) or use --out-dir on another file system",
    ),
}


class _FdSink:
    """Minimal binary file object over a raw descriptor, so every byte goes through ``os.write``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        # torch.save may replace a write error with its own RuntimeError while closing the archive;
        # the first OSError is kept so the real cause (e.g. ENOSPC) is the one reported
        self.error: OSError | None = None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        total = 0
        try:
            while total < len(view):
                total += os.write(self.fd, view[total:])
        except OSError as exc:
            self.error = self.error or exc
            raise
        return total

    def flush(self) -> None:
        """Nothing is buffered: writes go straight to the descriptor."""


def _fsync_directory(directory: Path) -> None:
    # Not every platform/file system lets a directory be opened or synced; the rename already happened.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def os_error_to_checkpoint_error(exc: OSError, path: Path, *, had_previous: bool) -> CheckpointError:
    what, fix = _OS_ERRORS.get(exc.errno or 0, (exc.strerror or str(exc), "use --out-dir to write elsewhere"))
    if had_previous:
        state = f"the previous {'checkpoint' if path.suffix == '.pt' else 'file'} {path} is intact"
    else:
        state = f"no partial file was left at {path}"
    return CheckpointError(f"{what} while writing {path}; {state}", hint=fix)


def remove_stale_temp_files(target: Path) -> None:
    """Delete temporary files left next to ``target`` by writers that were killed mid-write."""
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        pid_text = leftover.name[len(target.name) + 2 : -len(".tmp")]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                leftover.unlink()
        except OSError:
            continue


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[BinaryIO], None], *, pause_as: str = "file_write"
) -> None:
    """Write ``path`` through ``write(fileobj)`` so that it is replaced all at once or not at all.

    ``pause_as`` names the test pause point between the write and the rename (see testhooks).
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    had_previous = target.exists()
    remove_stale_temp_files(target)
    candidate = str(directory / f".{target.name}.{os.getpid()}.tmp")
    tmp_name: str | None = None
    try:
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
        tmp_name = candidate
        sink = _FdSink(fd)
        try:
            write(sink)  # type: ignore[arg-type]
            os.fsync(fd)
        except Exception:
            if sink.error is not None:
                raise sink.error from None
            raise
        finally:
            os.close(fd)
        pause_point(pause_as)
        os.replace(tmp_name, target)
        tmp_name = None
        _fsync_directory(directory)
    except OSError as exc:
        raise os_error_to_checkpoint_error(exc, target, had_previous=had_previous) from exc
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
