"""StructureParameterPruner: threshold whole structures by their Max or Mean_Abs magnitude."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from prunecli.pruners.base import Pruner
from prunecli.pruners.criteria import THRESHOLD_CRITERIA, THRESHOLD_GROUP_TYPES, group_threshold_mask


def check_reg_regims(reg_regims: Mapping[str, Sequence], *, structured: bool) -> dict:
    """``{param: [threshold, group_type]}`` (or ``{param: strength}`` when not structured)."""
    checked = {}
    for name, regim in reg_regims.items():
        if structured:
            if not isinstance(regim, Sequence) or isinstance(regim, str) or len(regim) != 2:
                raise ValueError(f"reg_regims[{name!r}] must be [value, group_type], got {regim!r}")
            if not isinstance(regim[0], int | float):
                raise ValueError(f"reg_regims[{name!r}][0] must be a number, got {regim[0]!r}")
            checked[name] = [float(regim[0]), str(regim[1])]
        else:
            if not isinstance(regim, int | float):
                raise ValueError(f"reg_regims[{name!r}] must be a number, got {regim!r}")
            checked[name] = float(regim)
    return checked


class StructureParameterPruner(Pruner):
    def __init__(
        self,
        name: str,
        reg_regims: Mapping[str, Sequence],
        threshold_criteria: str,
        model: nn.Module | None = None,
    ) -> None:
        super().__init__(name, model)
        if threshold_criteria not in THRESHOLD_CRITERIA:
            raise ValueError(f"threshold_criteria must be one of {list(THRESHOLD_CRITERIA)}")
        self.reg_regims = check_reg_regims(reg_regims, structured=True)
        for name_, (_, group_type) in self.reg_regims.items():
            if group_type not in THRESHOLD_GROUP_TYPES:
                raise ValueError(f"reg_regims[{name_!r}]: unknown group type {group_type!r}")
        self.threshold_criteria = threshold_criteria
        self.params_names = list(self.reg_regims)

    def set_param_mask(self, param, param_name, maskers, meta=None) -> None:
        if param_name not in self.reg_regims:
            return
        threshold, group_type = self.reg_regims[param_name]
        maskers[param_name].mask = group_threshold_mask(param, group_type, threshold, self.threshold_criteria)
