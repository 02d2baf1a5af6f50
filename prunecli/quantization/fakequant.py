"""Fake-quantization ops: one small module per way of rounding a tensor during training or calibration.

Each :class:`TensorFakeQuant` rounds in ``forward`` with a straight-through (or the method's own)
gradient, says in ``effective`` what float tensor its rounding starts from (the value kept in the
model at the end: DoReFa's tanh-normalised weights, WRPN's clamped ones, the trained ones
otherwise), and describes its grid in ``export`` as a :class:`~prunecli.quantization.spec.TensorQuant`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .clipping import ClipSettings, saturation
from .linear import (
    ASYMMETRIC_UNSIGNED,
    SYMMETRIC,
    asymmetric_params,
    fake_quantize,
    is_signed,
    params_for,
    per_channel_view,
    quantized_range,
    symmetric_params,
    to_torch_convention,
)
from .spec import TensorQuant


def _tq(
    bits: int, signed: bool, scale: torch.Tensor, zero_point: torch.Tensor, axis: int | None = None
) -> TensorQuant:
    """A plan entry from Distiller-convention (scale, zero_point)."""
    s, z = to_torch_convention(
        scale.detach().reshape(-1) if axis is not None else scale.detach().reshape(()),
        zero_point.detach().reshape(-1) if axis is not None else zero_point.detach().reshape(()),
    )
    return TensorQuant(bits=bits, signed=signed, scale=s, zero_point=z, axis=axis)


class TensorFakeQuant(nn.Module):
    """Base: rounds one tensor; ``bits`` is its bit width."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = int(bits)

    def effective(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def export(self, x: torch.Tensor | None) -> TensorQuant:
        raise NotImplementedError


class RangeLinearWeight(TensorFakeQuant):
    """Distiller's range-linear weights: the grid spans the tensor's own range (per tensor or per channel)."""

    def __init__(self, bits: int, mode: str = SYMMETRIC, per_channel: bool = False) -> None:
        super().__init__(bits)
        self.mode = mode
        self.per_channel = per_channel

    def _params(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        per_channel = self.per_channel and w.dim() in (2, 3, 4, 5)
        lo, hi = saturation("NONE", ClipSettings(self.mode, self.bits), tensor=w, per_channel=per_channel)
        scale, zp = params_for(self.mode, self.bits, lo, hi)
        if per_channel:
            scale, zp = per_channel_view(scale, w), per_channel_view(zp, w)
        return scale, zp

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            scale, zp = self._params(w)
        return fake_quantize(w, scale, zp, self.bits, is_signed(self.mode))

    def export(self, w: torch.Tensor | None) -> TensorQuant:
        assert w is not None
        scale, zp = self._params(w)
        axis = 0 if scale.dim() > 0 and scale.numel() > 1 else None
        return _tq(self.bits, is_signed(self.mode), scale, zp, axis)


class RangeLinearActivation(TensorFakeQuant):
    """Range-linear activations: a fixed range from statistics, else per batch (dynamic), or an EMA.

    ``stats`` is one record of a stats file (min/max/avg_min/...); with ``ema_decay`` the range is
    Distiller's bias-corrected exponential moving average of batch min/max, updated in training.
    """

    def __init__(
        self,
        bits: int,
        mode: str = SYMMETRIC,
        clip: str = "NONE",
        *,
        stats: Mapping[str, Any] | None = None,
        n_stds: float | None = None,
        half_range: bool = False,
        ema_decay: float | None = None,
    ) -> None:
        super().__init__(bits)
        self.mode = mode
        self.settings = ClipSettings(mode, self.bits, n_stds, half_range)
        self.clip = clip
        self.ema_decay = ema_decay
        self.register_buffer("sat_min", torch.zeros(()))
        self.register_buffer("sat_max", torch.zeros(()))
        self.register_buffer("steps", torch.zeros(()))
        self.fixed = stats is not None
        if stats is not None:
            lo, hi = saturation(clip, self.settings, stats=stats)
            self.sat_min.fill_(float(lo))
            self.sat_max.fill_(float(hi))
        if ema_decay is not None:
            self.register_buffer("biased_min", torch.zeros(()))
            self.register_buffer("biased_max", torch.zeros(()))

    def _observe(self, x: torch.Tensor) -> None:
        lo, hi = saturation(self.clip, self.settings, tensor=x)
        self.steps += 1
        if self.ema_decay is None:
            self.sat_min.fill_(float(lo))
            self.sat_max.fill_(float(hi))
            return
        d = self.ema_decay
        self.biased_min.mul_(d).add_((1 - d) * lo)
        self.biased_max.mul_(d).add_((1 - d) * hi)
        correction = 1 - d ** float(self.steps)
        self.sat_min.copy_(self.biased_min / correction)
        self.sat_max.copy_(self.biased_max / correction)

    def _params(self) -> tuple[torch.Tensor, torch.Tensor]:
        return params_for(self.mode, self.bits, self.sat_min.clone(), self.sat_max.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fixed and (self.ema_decay is None or self.training or int(self.steps) == 0):
            with torch.no_grad():
                self._observe(x)
        scale, zp = self._params()
        if self.ema_decay is not None:  # Distiller clamps to the tracked range before rounding
            lo, hi = self.sat_min.clone(), self.sat_max.clone()
            if self.mode == SYMMETRIC:
                hi = torch.maximum(lo.abs(), hi.abs())
                lo = -hi
            x = torch.minimum(torch.maximum(x, lo.to(x)), hi.to(x))
        return fake_quantize(x, scale, zp, self.bits, is_signed(self.mode))

    def export(self, x: torch.Tensor | None = None) -> TensorQuant:
        scale, zp = self._params()
        return _tq(self.bits, is_signed(self.mode), scale, zp)


def dorefa_normalise(w: torch.Tensor) -> torch.Tensor:
    """DoReFa's weight transform before rounding: ``tanh(w) / (2 max|tanh(w)|) + 1/2`` in [0, 1]."""
    t = torch.tanh(w)
    return torch.add(t * (0.5 / t.detach().abs().max().clamp_min(1e-12)), 0.5)


class _BinarizeSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, w: torch.Tensor) -> torch.Tensor:
        e = w.abs().mean()
        return torch.where(w == 0, torch.ones_like(w), torch.sign(w)) * e

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


class DorefaWeight(TensorFakeQuant):
    """DoReFa weights: ``2 * quantize_k(tanh(w) / (2 max|tanh(w)|) + 1/2) - 1``; 1 bit: ``sign(w) * mean|w|``.

    Its 2**k levels are symmetric around zero without a zero level, so the plan's zero point is the
    half-integer (2**k - 1) / 2.
    """

    def _n(self) -> int:
        return 2**self.bits - 1

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.bits == 1:
            return _BinarizeSTE.apply(w)
        scale, zp = asymmetric_params(self.bits, 0.0, 1.0)
        return 2 * fake_quantize(dorefa_normalise(w), scale, zp, self.bits, False) - 1

    def effective(self, w: torch.Tensor) -> torch.Tensor:
        if self.bits == 1:
            return _BinarizeSTE.apply(w).detach()
        return (2 * dorefa_normalise(w) - 1).detach()

    def export(self, w: torch.Tensor | None) -> TensorQuant:
        if self.bits == 1:
            assert w is not None
            e = w.detach().abs().mean()
            return TensorQuant(1, False, (2 * e).reshape(()), torch.tensor(0.5))
        n = self._n()
        return TensorQuant(self.bits, False, torch.tensor(2.0 / n), torch.tensor(n / 2.0))


class WrpnWeight(TensorFakeQuant):
    """WRPN weights: clamp to [-1, 1], then symmetric rounding with saturation 1."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale, zp = symmetric_params(self.bits, 1.0)
        return fake_quantize(w.clamp(-1, 1), scale, zp, self.bits, True)

    def effective(self, w: torch.Tensor) -> torch.Tensor:
        return w.detach().clamp(-1, 1)

    def export(self, w: torch.Tensor | None) -> TensorQuant:
        scale, zp = symmetric_params(self.bits, 1.0)
        return _tq(self.bits, True, scale, zp)


class ClippedActivation(TensorFakeQuant):
    """DoReFa's and WRPN's activations: clamp to [0, clip_val] and round onto 2**bits - 1 steps."""

    def __init__(self, bits: int, clip_val: float = 1.0) -> None:
        super().__init__(bits)
        self.clip_val = float(clip_val)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, zp = asymmetric_params(self.bits, 0.0, self.clip_val)
        return fake_quantize(x.clamp(0, self.clip_val), scale, zp, self.bits, False)

    def export(self, x: torch.Tensor | None = None) -> TensorQuant:
        scale, zp = asymmetric_params(self.bits, 0.0, self.clip_val)
        return _tq(self.bits, False, scale, zp)


class PactActivation(TensorFakeQuant):
    """PACT: ``y = clamp(x, 0, alpha)`` with a learned ``alpha`` (``clip_val``), then rounding.

    The gradient reaches ``alpha`` where the input is clipped (d y / d alpha = 1 for x >= alpha),
    and the input where 0 < x < alpha.
    """

    def __init__(self, bits: int, init_clip_val: float = 8.0) -> None:
        super().__init__(bits)
        self.clip_val = nn.Parameter(torch.tensor([float(init_clip_val)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(x)
        x = torch.where(x < self.clip_val, x, self.clip_val)
        with torch.no_grad():
            scale, zp = asymmetric_params(self.bits, 0.0, self.clip_val.detach().reshape(()))
        return fake_quantize(x, scale, zp, self.bits, False)

    def export(self, x: torch.Tensor | None = None) -> TensorQuant:
        scale, zp = asymmetric_params(self.bits, 0.0, self.clip_val.detach().reshape(()))
        return _tq(self.bits, False, scale, zp)


class _SignSTE(torch.autograd.Function):
    """BNN's sign with the straight-through estimator cancelled where |x| > 1."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


class SignQuant(TensorFakeQuant):
    """BNN (Courbariaux et al.): weights or activations to +1 / -1."""

    def __init__(self, bits: int = 1) -> None:
        super().__init__(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SignSTE.apply(x)

    def effective(self, x: torch.Tensor) -> torch.Tensor:
        return _SignSTE.apply(x).detach()

    def export(self, x: torch.Tensor | None = None) -> TensorQuant:
        return TensorQuant(1, False, torch.tensor(2.0), torch.tensor(0.5))


class NaiveWeight(TensorFakeQuant):
    """NNI's naive quantizer: symmetric, ``scale = max|w| / (2**(bits-1) - 1)``, no training."""

    def _scale(self, w: torch.Tensor) -> torch.Tensor:
        qmax = 2 ** (self.bits - 1) - 1
        m = w.detach().abs().max()
        return torch.where(m > 0, m / qmax, torch.ones_like(m))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        s = self._scale(w)
        qmin, qmax = quantized_range(self.bits, True)
        return fake_quantize(w, 1 / s, torch.zeros(()), self.bits, True) if qmax > qmin else w

    def export(self, w: torch.Tensor | None) -> TensorQuant:
        assert w is not None
        return TensorQuant(self.bits, True, self._scale(w).reshape(()), torch.tensor(0.0))


def _grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    return (x - x * g).detach() + x * g


def _round_pass(x: torch.Tensor) -> torch.Tensor:
    return (x.round() - x).detach() + x


class LsqQuant(TensorFakeQuant):
    """LSQ (Esser et al.): ``round(clamp(x / s, -Qn, Qp)) * s`` with a learned step ``s``.

    The step's gradient is ``round(x/s) - x/s`` inside the range and ``-Qn`` / ``Qp`` outside,
    scaled by ``1 / sqrt(numel * Qp)``. The step starts at ``2 mean|x| / sqrt(Qp)`` on first use.
    """

    def __init__(self, bits: int, signed: bool = True) -> None:
        super().__init__(bits)
        self.signed = signed
        self.step = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("initialised", torch.tensor(False))

    def _bounds(self) -> tuple[int, int]:
        qmin, qmax = quantized_range(self.bits, self.signed)
        return -qmin, qmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qn, qp = self._bounds()
        if not bool(self.initialised):
            with torch.no_grad():
                self.step.fill_(float(2 * x.detach().abs().mean() / (qp**0.5)) or 1.0)
                self.initialised.fill_(True)
        g = 1.0 / ((x.numel() * qp) ** 0.5)
        s = _grad_scale(self.step, g)
        return _round_pass(torch.clamp(x / s, -qn, qp)) * s

    def export(self, x: torch.Tensor | None = None) -> TensorQuant:
        return TensorQuant(
            self.bits, self.signed, self.step.detach().abs().reshape(()).clone(), torch.tensor(0.0)
        )


__all__ = [
    "ASYMMETRIC_UNSIGNED",
    "ClippedActivation",
    "DorefaWeight",
    "LsqQuant",
    "NaiveWeight",
    "PactActivation",
    "RangeLinearActivation",
    "RangeLinearWeight",
    "SignQuant",
    "TensorFakeQuant",
    "WrpnWeight",
    "dorefa_normalise",
]
