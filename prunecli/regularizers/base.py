"""Regularizer protocol: a loss term per parameter plus optional thresholding into a one-shot mask."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

#: Added under the square root of channel norms so their gradient stays finite at zero (Distiller's EPSILON).
EPSILON = 1e-8


class Regularizer:
    """``reg_regims`` maps real parameter names to the regularizer's per-parameter setting."""

    def __init__(
        self,
        name: str,
        reg_regims: Mapping[str, Any],
        threshold_criteria: str | None = None,
        model: nn.Module | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.reg_regims = dict(reg_regims)
        self.threshold_criteria = threshold_criteria

    @property
    def params_names(self) -> list[str]:
        return list(self.reg_regims)

    def loss(self, param: torch.Tensor, param_name: str) -> torch.Tensor | None:
        """This parameter's term of the regularization loss (``None`` when not regularized)."""
        raise NotImplementedError

    def threshold_mask(self, param: torch.Tensor, param_name: str) -> torch.Tensor | None:
        """The mask produced by thresholding (``None``: nothing to mask)."""
        return None

    def threshold(self, param: torch.Tensor, param_name: str, maskers: Mapping) -> None:
        """Distiller's ``threshold``: a one-shot regularization mask for the next application."""
        if self.threshold_criteria is None or param_name not in self.reg_regims:
            return
        masker = maskers[param_name]
        masker.mask = self.threshold_mask(param, param_name)
        masker.is_regularization_mask = True
