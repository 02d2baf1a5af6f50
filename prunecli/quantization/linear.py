"""Range-linear quantization arithmetic: Distiller's scale/zero-point formulas and a fake-quant op.

Distiller writes ``q = round(scale * x - zero_point)`` and ``x ~= (q + zero_point) / scale``
(``scale`` maps floats to integers). PyTorch, and :mod:`prunecli.quantization.spec`, write
``q = round(x / s) + z``; :func:`to_torch_convention` converts one into the other, so the
quantizers keep Distiller's formulas (and numbers) while the plan speaks PyTorch's language.
"""

from __future__ import annotations

from typing import Any

import torch

SYMMETRIC = "SYMMETRIC"
ASYMMETRIC_UNSIGNED = "ASYMMETRIC_UNSIGNED"
ASYMMETRIC_SIGNED = "ASYMMETRIC_SIGNED"


def is_symmetric(mode: str) -> bool:
    return mode == SYMMETRIC


def is_signed(mode: str) -> bool:
    """Symmetric and asymmetric-signed modes use signed integers."""
    return mode != ASYMMETRIC_UNSIGNED


def quantized_range(bits: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _as_tensor(value: Any) -> torch.Tensor:
    out = torch.as_tensor(value, dtype=torch.float32).detach().clone()
    return out


def symmetric_params(bits: int, saturation: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Distiller's symmetric mode: floats in [-sat, sat] onto ``n = (2**bits - 1) / 2`` steps a side.

    An all-zero range gets scale 1 so zeros stay zeros.
    """
    sat = _as_tensor(saturation).abs()
    n = (2**bits - 1) / 2
    sat = torch.where(sat == 0, torch.full_like(sat, n), sat)
    scale = n / sat
    return scale, torch.zeros_like(scale)


def asymmetric_params(
    bits: int, sat_min: Any, sat_max: Any, *, signed: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distiller's asymmetric modes: [min, max] (widened to hold 0) onto ``2**bits - 1`` steps.

    The zero point is rounded to an integer so float zero is exactly representable; the signed
    mode shifts it by ``2**(bits-1)`` to use a signed integer range.
    """
    lo = torch.minimum(_as_tensor(sat_min), torch.zeros(()))
    hi = torch.maximum(_as_tensor(sat_max), torch.zeros(()))
    if bool((lo > hi).any()):
        raise ValueError("saturation min must not exceed saturation max")
    n = 2**bits - 1
    diff = hi - lo
    diff = torch.where(diff == 0, torch.full_like(diff, float(n)), diff)
    scale = n / diff
    zero_point = (scale * lo).round()
    if signed:
        zero_point = zero_point + 2 ** (bits - 1)
    return scale, zero_point


def to_torch_convention(scale: torch.Tensor, zero_point: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distiller's (scale, zero_point) as PyTorch's: ``s = 1 / scale``, ``z = -zero_point``."""
    return (1.0 / scale).float(), (-zero_point).float()


class LinearQuantizeSTE(torch.autograd.Function):
    """Quantize, clamp to the integer range and dequantize; the gradient passes straight through."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int
    ) -> torch.Tensor:
        # one buffer, rounded in place: these run on every weight in every forward pass
        out = torch.mul(x, scale).sub_(zero_point).round_().clamp_(qmin, qmax)
        return out.add_(zero_point).div_(scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None, None]:
        return grad, None, None, None, None


def fake_quantize(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, bits: int, signed: bool
) -> torch.Tensor:
    """``x`` rounded to the grid of (scale, zero_point) in Distiller's convention, with STE gradient."""
    qmin, qmax = quantized_range(bits, signed)
    scale = scale.to(x.device, x.dtype)
    zero_point = zero_point.to(x.device, x.dtype)
    return LinearQuantizeSTE.apply(x, scale, zero_point, qmin, qmax)


def per_channel_view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-output-channel values shaped to broadcast against a weight tensor ``like``."""
    return values.reshape(values.shape[0], *([1] * (like.dim() - 1)))


def params_for(
    mode: str, bits: int, sat_min: torch.Tensor, sat_max: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero_point) for a saturation range under ``mode``."""
    if is_symmetric(mode):
        return symmetric_params(bits, torch.maximum(_as_tensor(sat_min).abs(), _as_tensor(sat_max).abs()))
    return asymmetric_params(bits, sat_min, sat_max, signed=mode == ASYMMETRIC_SIGNED)
