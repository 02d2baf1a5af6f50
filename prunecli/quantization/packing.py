"""Integer weights in as few bytes as they need: one byte per value up to 8 bits, two per byte below 5.

A quantized weight is stored as its integer codes ``q`` (see :mod:`prunecli.quantization.spec`) and
rebuilt exactly: ``unpack(pack(q, bits, signed), ...) == q``. Codes of 4 bits or fewer are shifted to
``0 .. 2**bits - 1`` (``q - qmin``) and stored two per byte, low nibble first; wider codes are
stored as int8 (signed) or uint8 (unsigned).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

#: the widest code stored two per byte
NIBBLE_BITS = 4


def qrange(bits: int, signed: bool) -> tuple[int, int]:
    """``(qmin, qmax)`` of a ``bits``-wide code (the plan's convention)."""
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


@dataclass
class PackedCodes:
    """Integer codes as stored: ``data`` (uint8 or int8), the original shape, bits and signedness."""

    data: torch.Tensor
    shape: tuple[int, ...]
    bits: int
    signed: bool

    @property
    def packed(self) -> bool:
        return self.bits <= NIBBLE_BITS

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "shape": list(self.shape), "bits": self.bits, "signed": self.signed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PackedCodes:
        return cls(
            data["data"], tuple(int(s) for s in data["shape"]), int(data["bits"]), bool(data["signed"])
        )


def pack(codes: torch.Tensor, bits: int, signed: bool) -> PackedCodes:
    """Store integer ``codes`` (any integer or integral float tensor within the range of ``bits``)."""
    qmin, qmax = qrange(bits, signed)
    values = codes.detach().to(torch.int32).flatten()
    if values.numel() and (int(values.min()) < qmin or int(values.max()) > qmax):
        raise ValueError(f"codes outside the {bits}-bit range {qmin}..{qmax}")
    shape = tuple(codes.shape)
    if bits > NIBBLE_BITS:
        dtype = torch.int8 if signed else torch.uint8
        return PackedCodes(values.to(dtype).reshape(shape).contiguous(), shape, bits, signed)
    offsets = (values - qmin).to(torch.uint8)
    if offsets.numel() % 2:
        offsets = torch.cat([offsets, offsets.new_zeros(1)])
    pairs = offsets.reshape(-1, 2)
    return PackedCodes((pairs[:, 0] | (pairs[:, 1] << 4)).contiguous(), shape, bits, signed)


def unpack(stored: PackedCodes) -> torch.Tensor:
    """The integer codes (int32, original shape) that :func:`pack` stored."""
    count = 1
    for size in stored.shape:
        count *= size
    if not stored.packed:
        return stored.data.to(torch.int32).reshape(stored.shape)
    qmin, _ = qrange(stored.bits, stored.signed)
    data = stored.data.to(torch.int32)
    codes = torch.stack([data & 0x0F, data >> 4], dim=1).flatten()[:count]
    return (codes + qmin).reshape(stored.shape)
