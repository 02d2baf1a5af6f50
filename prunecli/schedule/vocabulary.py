"""Words a schedule uses whose meaning several packages need, each declared here once.

* ``group_type`` values: which tensor ranks they fit, which dimension counts their structures, and
  for filters/channels which side of a channel group (producers or readers) they prune. Read by
  name matching (:mod:`prunecli.schedule.names`), the dependency check
  (:mod:`prunecli.graph.schedule_check`) and ``auto_dependency`` (:mod:`prunecli.compression.coupling`).
* ``threshold_criteria`` values and the engine metric each one means.
* ``thinning_func_str`` values of the thinning extensions and the
  :func:`prunecli.thinning.thin_model` mode each one means (read by the catalog's schema and by
  :class:`prunecli.compression.policies.ThinningPolicy`).
* which arguments of a component name parameters (declared per class in
  :mod:`prunecli.schedule.catalog`; :func:`parameter_names` reads them for everyone else).

Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .model import Component

Role = Literal["out", "in"]


@dataclass(frozen=True)
class GroupType:
    """What one ``group_type`` value means."""

    #: tensor ranks it applies to (Distiller's ranked pruners, thresholding, group lasso)
    ranks: frozenset[int]
    #: the dimension whose slices are its structures (what a Leader group counts); None if not slices
    dim: int | None = None
    #: for filters/channels: the members of a channel group it prunes ("out": the producers' filters,
    #: "in": the readers' input channels); None when pruning it does not remove channels
    role: Role | None = None
    #: how messages name its structures
    words: str = "structures"
    #: the engine target whose groups a *threshold* on this type keeps or removes (Distiller's
    #: thresholds read a 2-D weight's "Rows" as its stored rows, unlike its rankings; "tensor" is
    #: the whole tensor as one group); None where thresholds do not apply
    threshold: str | None = None
    #: the engine target whose groups Distiller's ranked pruners rank for this type (their "Rows" of a
    #: 2-D weight are its input columns; "blocks": Distiller's own block layout); None if not ranked
    ranking: str | None = None


def _ranks(*ranks: int) -> frozenset[int]:
    return frozenset(ranks)


#: group_type -> its meaning. "Channels" on a 2-D (Linear) weight are its columns and Distiller's
#: "Rows" of a 2-D weight are its input columns too (torch stores Linear weights transposed).
GROUP_TYPES: dict[str, GroupType] = {
    "Filters": GroupType(_ranks(3, 4), 0, "out", "filters", threshold="filters", ranking="filters"),
    "3D": GroupType(_ranks(3, 4), 0, "out", "filters", threshold="filters", ranking="filters"),
    "Channels": GroupType(_ranks(2, 4), 1, "in", "input channels", threshold="channels", ranking="channels"),
    "Rows": GroupType(_ranks(2), 1, words="rows", threshold="rows", ranking="channels"),
    "Cols": GroupType(_ranks(2), words="columns", threshold="columns", ranking="rows"),
    "2D": GroupType(_ranks(4), words="kernels", threshold="kernels", ranking="kernels"),
    "4D": GroupType(_ranks(4), threshold="tensor"),
    "Blocks": GroupType(_ranks(4), words="blocks", ranking="blocks"),
    "Rows+Cols": GroupType(_ranks(2)),
    "Cols+Rows": GroupType(_ranks(2)),
    "Channels+4D": GroupType(_ranks(4)),
    "4D+Channels": GroupType(_ranks(4)),
}

#: Distiller's ``threshold_criteria`` -> the engine metric that scores each group for it. Its
#: pruner and regularizers accept the first two; its thresholding function also takes the Lp
#: spellings, kept so results match it call for call.
THRESHOLD_CRITERIA: dict[str, str] = {
    "Max": "max",
    "Mean_Abs": "mean_l1",
    "Mean_L1": "mean_l1",
    "L1": "l1",
    "Mean_L2": "mean_l2",
    "L2": "l2",
}
#: the criteria a schedule may name (the pruner's and regularizers' ``threshold_criteria``)
SCHEDULE_THRESHOLD_CRITERIA: tuple[str, ...] = ("Max", "Mean_Abs")


def channel_group_types() -> dict[str, GroupType]:
    """The group types that prune whole channels of a dependency group (Filters, 3D, Channels)."""
    return {name: g for name, g in GROUP_TYPES.items() if g.role is not None}


def threshold_group_types() -> dict[str, GroupType]:
    """The group types a threshold can keep or remove (StructureParameterPruner, regularizers)."""
    return {name: g for name, g in GROUP_TYPES.items() if g.threshold is not None}


def rounded_dims() -> dict[str, int]:
    """group_type -> the dimension whose kept count ``round_to`` rounds (filters: outputs, channels: inputs)."""
    return {name: g.dim for name, g in channel_group_types().items() if g.dim is not None}


def structure_dims() -> dict[str, int]:
    """group_type -> the dimension counting its structures, for the types that have one."""
    return {name: g.dim for name, g in GROUP_TYPES.items() if g.dim is not None}


#: The thinning extensions (Distiller aliases FilterRemover/ChannelRemover to StructureRemover); their
#: ``arch``/``dataset`` arguments name the model and data set of a run.
THINNING_CLASSES: tuple[str, ...] = ("StructureRemover", "FilterRemover", "ChannelRemover")

#: ``thinning_func_str`` of the thinning extensions -> ``thin_model`` mode
THINNING_FUNCTIONS: dict[str, Literal["filters", "channels", "both"]] = {
    "remove_filters": "filters",
    "remove_channels": "channels",
    "contract_model": "both",
}


def parameter_names(component: Component) -> list[str]:
    """The parameter names ``component`` acts on, read from the arguments its class declares as names.

    A list argument (``weights``) when given, otherwise the keys of the first name-keyed mapping
    (``levels``, ``thresholds``, ``sensitivities``, ``reg_regims``); Distiller's ``*`` default entry
    is included as written.
    """
    from .catalog import lookup

    spec = lookup(component.class_name)
    if spec is None:
        return []
    for arg in spec.name_list_args:
        value = component.args.get(arg)
        if isinstance(value, list):
            return [str(name) for name in value]
    for arg in spec.name_dict_args:
        value = component.args.get(arg)
        if isinstance(value, dict):
            return [str(name) for name in value]
    return []
