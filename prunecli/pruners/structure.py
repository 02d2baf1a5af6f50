"""``reg_regims`` checks shared by StructureParameterPruner (:mod:`prunecli.pruners.compositions`)
and the regularizers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


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
