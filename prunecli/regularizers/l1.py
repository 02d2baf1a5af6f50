"""L1 (element-wise) regularization: ``strength * sum|w|``; threshold = strength."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from prunecli.pruners.criteria import threshold_mask
from prunecli.pruners.structure import check_reg_regims
from prunecli.regularizers.base import Regularizer


class L1Regularizer(Regularizer):
    def __init__(
        self,
        name: str,
        reg_regims: Mapping[str, float],
        threshold_criteria: str | None = None,
        model: nn.Module | None = None,
    ) -> None:
        super().__init__(name, check_reg_regims(reg_regims, structured=False), threshold_criteria, model)

    def loss(self, param, param_name):
        if param_name not in self.reg_regims:
            return None
        return param.abs().sum() * self.reg_regims[param_name]

    def threshold_mask(self, param, param_name):
        return threshold_mask(param.detach(), self.reg_regims[param_name])
