"""Clip modes: how a saturation range [min, max] is chosen from a tensor or from recorded stats.

Each of Distiller's ``ClipMode`` values (NONE, AVG, N_STD, GAUSS, LAPLACE) is one small class in
:data:`CLIP_MODES`, giving the range both from a live tensor (dynamic quantization, weights) and
from a statistics record (``min``/``max``/``avg_min``/``avg_max``/``mean``/``std``/``b``, as
written by ``prunecli collect-stats`` and Distiller's calibration). Symmetric modes then use
``max(|min|, |max|)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .linear import is_symmetric

#: ACIQ's optimal clipping constants (Banner et al., "Post-training 4-bit quantization of
#: convolution networks for rapid-deployment"), as tabulated by Distiller: alpha = k * b (Laplace)
#: or k * std (Gauss) for a given bit width; "positive" tables are for half-range (ReLU) outputs.
ALPHA_LAPLACE = {0: 1.05, 1: 1.86, 2: 2.83, 3: 3.89, 4: 5.03, 5: 6.2, 6: 7.41, 7: 8.64, 8: 9.89}
ALPHA_LAPLACE_POSITIVE = {0: 1.86, 1: 2.83, 2: 3.89, 3: 5.02, 4: 6.2, 5: 7.41, 6: 8.64, 7: 9.89, 8: 11.16}
ALPHA_GAUSS = {1: 1.24, 2: 1.71, 3: 2.15, 4: 2.55, 5: 2.93, 6: 3.28, 7: 3.61, 8: 3.92}
ALPHA_GAUSS_POSITIVE = {1: 1.71, 2: 2.15, 3: 2.55, 4: 2.93, 5: 3.28, 6: 3.61, 7: 3.92, 8: 4.2}


@dataclass(frozen=True)
class ClipSettings:
    """What a clip mode needs besides the data."""

    mode: str  # the LinearQuantMode name of the tensor being quantized
    bits: int
    n_stds: float | None = None
    half_range: bool = False


def _t(value: Any) -> torch.Tensor:
    return torch.as_tensor(float(value), dtype=torch.float32)


def _min_max(t: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if per_channel:
        flat = t.detach().reshape(t.shape[0], -1)
        return flat.min(dim=1).values, flat.max(dim=1).values
    return t.detach().min(), t.detach().max()


class ClipMode:
    """One way of choosing the saturation range."""

    name: ClassVar[str]

    def from_stats(self, stats: Mapping[str, Any], s: ClipSettings) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def from_tensor(
        self, t: torch.Tensor, s: ClipSettings, per_channel: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class NoClip(ClipMode):
    """The absolute min and max seen."""

    name = "NONE"

    def from_stats(self, stats, s):
        return _t(stats["min"]), _t(stats["max"])

    def from_tensor(self, t, s, per_channel=False):
        return _min_max(t, per_channel)


class AverageClip(ClipMode):
    """Per-sample min and max, averaged over the batch (``avg_min``/``avg_max`` in stats)."""

    name = "AVG"

    def from_stats(self, stats, s):
        return _t(stats["avg_min"]), _t(stats["avg_max"])

    def from_tensor(self, t, s, per_channel=False):
        if per_channel or t.dim() < 2:
            return _min_max(t, per_channel)
        lo, hi = _min_max(t, per_channel=True)
        return lo.mean(), hi.mean()


class StdClip(ClipMode):
    """``mean -/+ n_stds * std``, never wider than the absolute min/max."""

    name = "N_STD"

    def _range(self, lo, hi, mean, std, s):
        if s.n_stds is None or s.n_stds <= 0:
            raise ValueError("clip mode N_STD needs clip_n_stds > 0")
        return torch.maximum(lo, mean - s.n_stds * std), torch.minimum(hi, mean + s.n_stds * std)

    def from_stats(self, stats, s):
        return self._range(_t(stats["min"]), _t(stats["max"]), _t(stats["mean"]), _t(stats["std"]), s)

    def from_tensor(self, t, s, per_channel=False):
        if per_channel:
            raise ValueError("N_STD clipping is not available with per-channel quantization")
        t = t.detach()
        return self._range(t.min(), t.max(), t.mean(), t.std(), s)


class AciqClip(ClipMode):
    """ACIQ: clip at ``alpha = k(bits) * spread`` around the mean (symmetric) or above the min."""

    name = ""
    table: ClassVar[dict[int, float]]
    positive_table: ClassVar[dict[int, float]]

    def spread(self, stats: Mapping[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def alpha(self, stats: Mapping[str, Any], s: ClipSettings) -> torch.Tensor:
        table = self.positive_table if s.half_range else self.table
        if s.bits not in table:
            raise ValueError(
                f"{self.name} clipping has constants for {min(table)}..{max(table)} bits, not {s.bits}"
            )
        return self.spread(stats) * table[s.bits]

    def from_stats(self, stats, s):
        mean = _t(stats["mean"])
        if is_symmetric(s.mode):
            clip = mean.abs() + self.alpha(stats, ClipSettings(s.mode, s.bits))
            return -clip, clip
        alpha = self.alpha(stats, s)
        lo = torch.maximum(_t(stats["avg_min"]), mean - alpha)
        return lo, lo + (alpha if s.half_range else 2 * alpha)

    def from_tensor(self, t, s, per_channel=False):
        if per_channel:
            raise ValueError(f"{self.name} clipping is not available with per-channel quantization")
        return self.from_stats(tensor_stats(t), s)


class GaussClip(AciqClip):
    name = "GAUSS"
    table = ALPHA_GAUSS
    positive_table = ALPHA_GAUSS_POSITIVE

    def spread(self, stats):
        return _t(stats["std"])


class LaplaceClip(AciqClip):
    name = "LAPLACE"
    table = ALPHA_LAPLACE
    positive_table = ALPHA_LAPLACE_POSITIVE

    def spread(self, stats):
        return _t(stats["b"])


CLIP_MODES: dict[str, ClipMode] = {
    c.name: c() for c in (NoClip, AverageClip, StdClip, GaussClip, LaplaceClip)
}


def tensor_stats(t: torch.Tensor) -> dict[str, float]:
    """The statistics record of one tensor (one batch), in the stats file's keys."""
    t = t.detach().float()
    flat = t.reshape(t.shape[0], -1) if t.dim() >= 2 else t.reshape(1, -1)
    mean = t.mean()
    return {
        "min": float(t.min()),
        "max": float(t.max()),
        "avg_min": float(flat.min(dim=1).values.mean()),
        "avg_max": float(flat.max(dim=1).values.mean()),
        "mean": float(mean),
        "std": float(t.std()) if t.numel() > 1 else 0.0,
        "b": float((t - mean).abs().mean()),
    }


def saturation(
    clip: str,
    settings: ClipSettings,
    *,
    stats: Mapping[str, Any] | None = None,
    tensor: torch.Tensor | None = None,
    per_channel: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The saturation range by clip mode ``clip``, from ``stats`` when given, else from ``tensor``."""
    mode = CLIP_MODES[clip]
    if stats is not None:
        return mode.from_stats(stats, settings)
    assert tensor is not None
    return mode.from_tensor(tensor, settings, per_channel)
