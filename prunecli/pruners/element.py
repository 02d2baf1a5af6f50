"""Element-wise (fine-grained) pruners: each weight is kept or zeroed on its own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from prunecli.pruners.base import Pruner, require_meta, wildcard_lookup
from prunecli.pruners.criteria import level_mask, threshold_mask


class MagnitudeParameterPruner(Pruner):
    """Keep ``|w| > threshold``; ``thresholds['*']`` (mandatory) applies to every other parameter."""

    def __init__(self, name: str, thresholds: Mapping[str, float], model: nn.Module | None = None) -> None:
        super().__init__(name, model)
        if not isinstance(thresholds, Mapping) or "*" not in thresholds:
            raise ValueError("thresholds must be a mapping that includes a '*' entry")
        self.thresholds = dict(thresholds)

    def set_param_mask(self, param, param_name, maskers, meta=None) -> None:
        threshold = wildcard_lookup(self.thresholds, param_name)
        maskers[param_name].mask = threshold_mask(param, threshold)


class SensitivityPruner(Pruner):
    """Threshold ``s * std(w)``; the std is measured at the first prune and then frozen (Han et al.)."""

    def __init__(self, name: str, sensitivities: Mapping[str, float], model: nn.Module | None = None) -> None:
        super().__init__(name, model)
        self.sensitivities = dict(sensitivities)
        self.stddev: dict[str, float] = {}

    def set_param_mask(self, param, param_name, maskers, meta=None) -> None:
        sensitivity = wildcard_lookup(self.sensitivities, param_name)
        if sensitivity is None:
            return
        if param_name not in self.stddev:
            self.stddev[param_name] = torch.std(param.detach()).item()
        maskers[param_name].mask = threshold_mask(param, self.stddev[param_name] * sensitivity)

    def state_dict(self) -> dict[str, Any]:
        return {"stddev": dict(self.stddev)}


class SparsityLevelParameterPruner(Pruner):
    """Prune each parameter to an exact element sparsity level (``levels['*']`` as default)."""

    def __init__(self, name: str, levels: Mapping[str, float], model: nn.Module | None = None) -> None:
        super().__init__(name, model)
        self.levels = dict(levels)

    def set_param_mask(self, param, param_name, maskers, meta=None) -> None:
        level = wildcard_lookup(self.levels, param_name) or 0
        if level == 0:
            return
        maskers[param_name].mask = level_mask(param, level)


class SplicingPruner(Pruner):
    """Dynamic Network Surgery: prune below a low threshold, splice back above a high one.

    Thresholds are ``(mean|w| + std|w| * s) * mult`` with mean/std of |w| frozen at the first call;
    ``s`` grows by ``(epoch - starting_epoch) * sensitivity_multiplier + 1`` when the multiplier is set.
    """

    def __init__(
        self,
        name: str,
        sensitivities: Mapping[str, float],
        low_thresh_mult: float,
        hi_thresh_mult: float,
        sensitivity_multiplier: float = 0,
        model: nn.Module | None = None,
    ) -> None:
        super().__init__(name, model)
        self.sensitivities = dict(sensitivities)
        self.low_thresh_mult = low_thresh_mult
        self.hi_thresh_mult = hi_thresh_mult
        self.sensitivity_multiplier = sensitivity_multiplier
        self.stats: dict[str, list[float]] = {}

    def set_param_mask(self, param, param_name, maskers, meta=None) -> None:
        sensitivity = wildcard_lookup(self.sensitivities, param_name)
        if sensitivity is None:
            return
        if self.sensitivity_multiplier > 0:
            meta = require_meta(meta, type(self).__name__, ("current_epoch", "starting_epoch"))
            sensitivity *= (meta["current_epoch"] - meta["starting_epoch"]) * self.sensitivity_multiplier + 1
        masker = maskers[param_name]
        current = masker.mask if masker.mask is not None else torch.ones_like(param)
        with torch.no_grad():
            magnitude = param.detach().abs()
            if param_name not in self.stats:
                self.stats[param_name] = [magnitude.mean().item(), torch.std(magnitude).item()]
            mean, std = self.stats[param_name]
            low = (mean + std * sensitivity) * self.low_thresh_mult
            high = (mean + std * sensitivity) * self.hi_thresh_mult
            new_mask = torch.where(magnitude < low, torch.zeros_like(current), current)
            new_mask = torch.where(magnitude >= high, torch.ones_like(current), new_mask)
        masker.mask = new_mask

    def state_dict(self) -> dict[str, Any]:
        return {"stats": {k: list(v) for k, v in self.stats.items()}}


class BaiduRNNPruner(Pruner):
    """Narang et al. (2017) gradual threshold, at epoch granularity as in Distiller."""

    def __init__(
        self,
        name: str,
        q: float,
        ramp_epoch_offset: int,
        ramp_slope_mult: float,
        weights: list[str],
        model: nn.Module | None = None,
    ) -> None:
        super().__init__(name, model)
        self.q = q
        self.ramp_epoch_offset = ramp_epoch_offset
        self.ramp_slope_mult = ramp_slope_mult
        self.params_names = list(weights)
        self.start_slope: float | None = None
        self.ramp_slope: float | None = None

    def threshold(self, meta: Mapping[str, Any] | None) -> float:
        meta = require_meta(meta, type(self).__name__)
        start, end, freq = meta["starting_epoch"], meta["ending_epoch"], meta["frequency"] or 1
        current = meta["current_epoch"]
        ramp_epoch = self.ramp_epoch_offset + start
        if self.start_slope is None:
            self.start_slope = (2 * self.q * freq) / (2 * (ramp_epoch - start) + 3 * (end - ramp_epoch))
            self.ramp_slope = self.start_slope * self.ramp_slope_mult
        if current < ramp_epoch:
            return self.start_slope * (current - start + 1) / freq
        return (
            self.start_slope * (ramp_epoch - start + 1) + self.ramp_slope * (current - ramp_epoch + 1)
        ) / freq

    def set_param_mask(self, param, param_name, maskers, meta=None) -> None:
        if param_name not in self.params_names:
            return
        maskers[param_name].mask = threshold_mask(param, self.threshold(meta))

    def state_dict(self) -> dict[str, Any]:
        return {"start_slope": self.start_slope, "ramp_slope": self.ramp_slope}
