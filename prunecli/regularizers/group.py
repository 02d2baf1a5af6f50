"""Group Lasso and group-variance regularization (structured sparsity, Distiller's definitions).

``reg_regims[param] = [strength, group_type]``. Rows/Cols refer to the stored 2D matrix
(rows = dim 0). Channel norms get ``EPSILON`` under the square root, the others do not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from prunecli.pruners.criteria import group_threshold_mask
from prunecli.pruners.structure import check_reg_regims
from prunecli.regularizers.base import EPSILON, Regularizer
from prunecli.schedule.vocabulary import SCHEDULE_THRESHOLD_CRITERIA


def _need_dim(t: torch.Tensor, dims: int, group_type: str) -> None:
    if t.dim() != dims:
        raise ValueError(f"group type {group_type!r} needs a {dims}D tensor, got shape {tuple(t.shape)}")


def channels_l2(t: torch.Tensor) -> torch.Tensor:
    """L2 norm of each input channel of a 4D weight (all kernels applied to that channel)."""
    _need_dim(t, 4, "Channels")
    sq = t.pow(2).sum(dim=(2, 3))  # filters x channels
    return sq.sum(dim=0).add(EPSILON).sqrt()


def _kernels(t: torch.Tensor) -> torch.Tensor:
    _need_dim(t, 4, "2D")
    return t.reshape(-1, t.size(2) * t.size(3)).norm(2, dim=1).sum()


def _rows(t: torch.Tensor) -> torch.Tensor:
    _need_dim(t, 2, "Rows")
    return t.norm(2, dim=1).sum()


def _cols(t: torch.Tensor) -> torch.Tensor:
    _need_dim(t, 2, "Cols")
    return t.norm(2, dim=0).sum()


def _filters(t: torch.Tensor) -> torch.Tensor:
    _need_dim(t, 4, "Filters")
    return t.reshape(t.size(0), -1).norm(2, dim=1).sum()


def _layer(t: torch.Tensor) -> torch.Tensor:
    _need_dim(t, 4, "4D")
    return t.norm(2)


def _channels(t: torch.Tensor) -> torch.Tensor:
    return channels_l2(t).sum()


#: group type -> the unscaled group-lasso term(s) it adds
GROUP_LASSO_TERMS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], ...]] = {
    "2D": (_kernels,),
    "Rows": (_rows,),
    "Cols": (_cols,),
    "Rows+Cols": (_rows, _cols),
    "Cols+Rows": (_rows, _cols),
    "Channels": (_channels,),
    "Filters": (_filters,),
    "3D": (_filters,),
    "4D": (_layer,),
    "Channels+4D": (_channels, _layer),
    "4D+Channels": (_channels, _layer),
}


class GroupLassoRegularizer(Regularizer):
    group_types: Mapping[str, tuple] = GROUP_LASSO_TERMS

    def __init__(
        self,
        name: str,
        reg_regims: Mapping[str, Sequence],
        threshold_criteria: str | None = None,
        model: nn.Module | None = None,
    ) -> None:
        if threshold_criteria not in (None, *SCHEDULE_THRESHOLD_CRITERIA):
            raise ValueError(
                f"threshold_criteria must be one of {list(SCHEDULE_THRESHOLD_CRITERIA)} or absent"
            )
        super().__init__(name, check_reg_regims(reg_regims, structured=True), threshold_criteria, model)
        for pname, (_, group_type) in self.reg_regims.items():
            if group_type not in self.group_types:
                raise ValueError(
                    f"reg_regims[{pname!r}]: unknown group type {group_type!r}; use one of {list(self.group_types)}"
                )

    def loss(self, param, param_name):
        if param_name not in self.reg_regims:
            return None
        strength, group_type = self.reg_regims[param_name]
        total = sum(term(param) for term in GROUP_LASSO_TERMS[group_type])
        return total * strength

    def threshold_mask(self, param, param_name):
        strength, group_type = self.reg_regims[param_name]
        return group_threshold_mask(param, group_type, strength, self.threshold_criteria)


class GroupVarianceRegularizer(GroupLassoRegularizer):
    """``strength / var(channel L2 norms)``: pushes channel norms apart (Torfi et al. 2018). Channels only."""

    group_types = {"Channels": GROUP_LASSO_TERMS["Channels"]}

    def __init__(self, name: str, reg_regims: Mapping[str, Sequence], model: nn.Module | None = None) -> None:
        super().__init__(name, reg_regims, None, model)

    def loss(self, param, param_name):
        if param_name not in self.reg_regims:
            return None
        strength, _ = self.reg_regims[param_name]
        return strength * (1 / channels_l2(param).var())
