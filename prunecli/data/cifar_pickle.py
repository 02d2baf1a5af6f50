"""Reader for the CIFAR "python version" batches without trusting pickle.

The batches are pickled dicts of numpy arrays and lists. ``pickle.load`` would run whatever a
file names, so :class:`BatchUnpickler` resolves only the few numpy functions needed to rebuild
an array (and ``_codecs.encode``, which Python 3 pickles of bytes use); any other class in the
file is refused with a :class:`DataError`.
"""

from __future__ import annotations

import importlib
import io
import pickle
from typing import Any

from prunecli.errors import DataError

ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        for candidate in (module, module.replace("numpy.core", "numpy._core")):
            try:
                return getattr(importlib.import_module(candidate), name)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"cannot resolve {module}.{name}")


def load_batch(path: str) -> dict[str, Any]:
    """One batch file as a dict with str keys (the files use bytes keys)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        obj = BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}", hint="check the file's permissions") from None
    except Exception as exc:
        raise DataError(
            f"{path} is not a CIFAR python batch: {exc}",
            hint="use the 'python version' archive (cifar-10-python.tar.gz / cifar-100-python.tar.gz)",
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a CIFAR python batch: it holds a {type(obj).__name__}, not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
