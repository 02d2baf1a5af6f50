"""Reader for the IDX format of the MNIST files (``train-images-idx3-ubyte`` etc., gzipped or not).

Layout: two zero bytes, a type code, the number of dimensions, that many big-endian uint32
sizes, then the values in C order. Anything else is refused with a :class:`DataError` naming
the file, because a truncated download is the usual cause.
"""

from __future__ import annotations

import gzip
import math
import os

import numpy as np

from prunecli.errors import DataError

TYPE_CODES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: str) -> bytes:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as exc:
        raise DataError(
            f"cannot read {path}: {exc}", hint="the file is damaged; download it again (and gunzip if needed)"
        ) from None


def read_idx(path: str) -> np.ndarray:
    data = _read_bytes(path)
    name = os.path.basename(path)

    def bad(why: str) -> DataError:
        return DataError(f"{path} is not a valid IDX file: {why}", hint=f"download {name} again")

    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise bad("it does not start with the IDX magic number (two zero bytes)")
    code, ndim = data[2], data[3]
    if code not in TYPE_CODES:
        raise bad(f"unknown element type code 0x{code:02x}")
    if ndim == 0 or len(data) < 4 + 4 * ndim:
        raise bad(f"header declares {ndim} dimensions but is too short")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(TYPE_CODES[code])
    expected = math.prod(shape) * dtype.itemsize
    body = len(data) - 4 - 4 * ndim
    if body != expected:
        raise bad(f"header says shape {shape} ({expected} bytes of data) but the file holds {body}")
    return np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim).reshape(shape)
