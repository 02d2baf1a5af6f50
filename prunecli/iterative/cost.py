"""Predicting what an allocation costs, so search generators can meet a budget before any pruning.

A search generator proposes per-tensor levels and must know, without touching the model, whether
they meet ``macs <= 0.25`` or ``latency_ms <= 3.0``. A :class:`CostModel` answers that:

* :class:`ShareCost` is the :class:`~prunecli.iterative.task.SearchSpace`'s own linear model: the
  budgeted quantity left is ``1 - sum(share * level)`` (NNI's weighted-sparsity accounting).
* :class:`LayerCost` knows each layer's shape and which tensors produce its input channels, so a
  layer whose producer loses half its filters also loses half its input (what thinning does).
* :class:`~prunecli.iterative.latency_table.LatencyCost` sums measured per-layer latencies.

:func:`scale_to_budget` turns any raw preference into levels that meet a budget under any of them:
the cost falls monotonically as levels rise, so a bisection on one scale factor finds the levels.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from prunecli.iterative.task import SearchSpace

#: below this gap a bisection stops (levels are fractions; one channel of 1,000 is 1e-3)
_TOL = 1e-7


class BudgetUnreachable(ValueError):
    """No allocation under ``max_level`` meets the budget; ``smallest`` is the best reachable cost."""

    def __init__(self, message: str, smallest: float) -> None:
        super().__init__(message)
        self.smallest = smallest


class CostModel(abc.ABC):
    """Predicts the budgeted quantity (a ratio to dense, or milliseconds) of an allocation."""

    #: the budget metric this model predicts (``macs``, ``params``, ``weights``, ``latency_ms``)
    metric: str = ""

    @abc.abstractmethod
    def predict(self, levels: Mapping[str, float]) -> float:
        """The predicted value with ``levels`` (missing tensors are unpruned)."""

    @property
    def dense(self) -> float:
        """The unpruned model's value (1.0 for ratios)."""
        return self.predict({})


class ShareCost(CostModel):
    """``1 - sum(share * level)``: each tensor's layer accounts for a fixed share of the quantity."""

    def __init__(self, shares: Mapping[str, float], metric: str = "weights") -> None:
        self.shares = dict(shares)
        self.metric = metric

    @classmethod
    def from_space(cls, space: SearchSpace) -> ShareCost:
        return cls(space.shares, space.budget.metric if space.budget else "weights")

    def predict(self, levels):
        return 1.0 - sum(self.shares.get(name, 0.0) * float(level) for name, level in levels.items())


@dataclass
class LayerInfo:
    """One prunable convolution or linear layer, as a generator may know it (plain data)."""

    weight: str  # its weight's parameter name; the level of this name removes output channels
    kind: str  # "conv" or "linear"
    in_channels: int
    out_channels: int
    kernel: int = 1  # product of the kernel sizes
    kernel_size: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    stride: int = 1
    groups: int = 1
    ifm_hw: tuple[int, ...] = ()  # the input feature map's spatial size
    macs: float = 0.0
    params: float = 0.0
    #: weights whose pruned filters remove this layer's input channels (per the dependency graph)
    producers: list[str] = field(default_factory=list)
    #: input features per producer channel (a linear layer after a flatten reads H*W per channel)
    in_block: int = 1
    #: a BatchNorm normalises this layer's outputs (timed with it: its cost shrinks with the layer)
    norm: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("ifm_hw", "kernel_size", "padding"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerInfo:
        values = dict(data)
        for key in ("ifm_hw", "kernel_size", "padding"):
            values[key] = tuple(values.get(key, ()))
        return cls(**values)

    def kept_out(self, levels: Mapping[str, float]) -> float:
        """Fraction of output channels kept."""
        return kept_fraction(float(levels.get(self.weight, 0.0)), self.out_channels)

    def kept_in(self, levels: Mapping[str, float]) -> float:
        """Fraction of input channels kept: a channel lives while any producer keeps it, so the
        producer keeping the most decides (a lower bound on what thinning keeps)."""
        if not self.producers:
            return 1.0
        channels = max(1, self.in_channels // max(self.in_block, 1))
        return max(kept_fraction(float(levels.get(p, 0.0)), channels) for p in self.producers)


def kept_fraction(level: float, channels: int) -> float:
    """What a level leaves of ``channels`` once whole channels go: ``floor(level * channels)`` are
    removed (the pruner's rounding), at least one stays."""
    if channels <= 0:
        return 1.0 - level
    removed = min(int(level * channels + 1e-9), channels - 1)
    return (channels - removed) / channels


def describe_layers(model: Any, example_input: Any, names: Iterable[str] | None = None) -> list[LayerInfo]:
    """Every conv/linear layer of ``model`` (or those whose weight is in ``names``) with its shape,
    MACs (as ``prunecli report`` counts them) and the producers of its input channels."""
    from torch import nn

    from prunecli.report.compute import compute_summary

    wanted = set(names) if names is not None else None
    modules = dict(model.named_modules())
    try:
        from prunecli.graph import build_dependency_graph

        graph = build_dependency_graph(model, example_input)
    except Exception:  # noqa: BLE001 -- untraceable: input channels are then taken as always live
        graph = None
    layers: list[LayerInfo] = []
    rows = [  # conv/linear modules; an attention's functional projections and products have no module
        row
        for row in compute_summary(model, example_input)
        if row.weight == f"{row.name}.weight"
        and isinstance(modules.get(row.name), (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))
    ]
    layer_weights = {row.weight for row in rows}
    for row in rows:
        weight = row.weight
        module = modules[row.name]
        producers: list[str] = []
        block = 1
        norm = False
        if graph is not None:
            outputs = graph.group_of(weight, 0)
            norm = outputs is not None and any(
                isinstance(modules.get(m.tensor.rpartition(".")[0]), nn.modules.batchnorm._BatchNorm)
                for m in outputs.producers()
            )
            group = graph.group_of(weight, 1)
            if group is not None:
                for member in group.producers():
                    if member.tensor in layer_weights and member.tensor != weight:
                        producers.append(member.tensor)
                reader = next((m for m in group.consumers() if m.tensor == weight), None)
                block = reader.block if reader is not None else 1
        if isinstance(module, nn.Linear):
            kind, cin, cout, kernel, stride, groups = (
                "linear",
                module.in_features,
                module.out_features,
                1,
                1,
                1,
            )
            kernel_size: tuple[int, ...] = ()
            padding: tuple[int, ...] = ()
        else:
            kind, cin, cout = "conv", module.in_channels, module.out_channels
            kernel = 1
            for k in module.kernel_size:
                kernel *= int(k)
            stride, groups = int(module.stride[0]), int(module.groups)
            kernel_size = tuple(int(k) for k in module.kernel_size)
            padding = tuple(int(p) for p in module.padding) if not isinstance(module.padding, str) else ()
        info = LayerInfo(
            weight=weight,
            kind=kind,
            in_channels=int(cin),
            out_channels=int(cout),
            kernel=kernel,
            kernel_size=kernel_size,
            padding=padding,
            stride=stride,
            groups=groups,
            ifm_hw=tuple(int(s) for s in row.ifm[2:]),
            macs=float(row.macs),
            params=float(row.weights_volume),
            producers=sorted(set(producers)),
            in_block=int(block),
            norm=bool(norm),
        )
        if wanted is None or weight in wanted:
            layers.append(info)
    return layers


class LayerCost(CostModel):
    """MACs or parameters of the conv/linear layers, each scaled by its kept outputs and inputs.

    Layers outside the search still count (their input can shrink); the ratio is to the dense sum.
    """

    def __init__(self, layers: Sequence[LayerInfo], metric: str = "macs") -> None:
        if metric not in ("macs", "params"):
            raise ValueError(f"LayerCost predicts macs or params, not {metric}")
        self.layers = list(layers)
        self.metric = metric
        self.total = sum(self._amount(layer) for layer in self.layers) or 1.0

    def _amount(self, layer: LayerInfo) -> float:
        return layer.macs if self.metric == "macs" else layer.params

    def predict(self, levels):
        kept = sum(
            self._amount(layer) * layer.kept_out(levels) * layer.kept_in(levels) for layer in self.layers
        )
        return kept / self.total

    def shares(self, names: Iterable[str]) -> dict[str, float]:
        """Each named layer's own share of the total (what a linear model would charge it)."""
        by_name = {layer.weight: layer for layer in self.layers}
        return {n: self._amount(by_name[n]) / self.total for n in names if n in by_name}


class UnitCost(CostModel):
    """Another cost model seen through the pruner's units: tensors pruned together (a coupled
    channel group) all take the highest level asked of any of them, as the pruner does."""

    def __init__(self, inner: CostModel, units: Iterable[Iterable[str]]) -> None:
        self.inner = inner
        self.metric = inner.metric
        self.units = [list(u) for u in units if len(list(u)) > 1]

    def effective(self, levels: Mapping[str, float]) -> dict[str, float]:
        out = dict(levels)
        for unit in self.units:
            asked = [float(levels[t]) for t in unit if t in levels]
            if asked:
                out.update(dict.fromkeys(unit, max(asked)))
        return out

    def predict(self, levels):
        return self.inner.predict(self.effective(levels))


def clip_levels(
    levels: Mapping[str, float], max_level: float, floor: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Levels inside ``[floor, max_level]`` (floor: what earlier rounds already removed)."""
    floor = floor or {}
    return {n: min(max(float(v), float(floor.get(n, 0.0)), 0.0), max_level) for n, v in levels.items()}


def scale_to_budget(
    raw: Mapping[str, float],
    cost: CostModel,
    target: float,
    max_level: float,
    floor: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Levels ``clip(scale * raw)`` with the smallest scale whose predicted cost is ``<= target``.

    NNI rescales random sparsities linearly so their weighted sum equals the total; clipping to
    ``max_level`` makes the relation non-linear, and other cost models are non-linear anyway, so the
    scale is found by bisection. Raises :class:`BudgetUnreachable` when even every tensor at
    ``max_level`` misses the target.
    """
    names = list(raw)
    ceiling = {n: max_level for n in names}
    smallest = cost.predict(clip_levels(ceiling, max_level, floor))
    if smallest > target + 1e-12:
        raise BudgetUnreachable(
            f"{cost.metric} <= {target:g} cannot be met with at most {max_level:g} per tensor "
            f"(smallest reachable {smallest:.4g})",
            smallest,
        )
    if cost.predict(clip_levels({n: 0.0 for n in names}, max_level, floor)) <= target:
        return clip_levels({n: 0.0 for n in names}, max_level, floor)
    positive = [float(v) for v in raw.values() if float(v) > 0]
    if not positive:
        raw = {n: 1.0 for n in names}
        positive = [1.0]
    lo, hi = 0.0, max_level / min(positive)
    for _ in range(200):
        if hi - lo <= _TOL * max(hi, 1.0):
            break
        mid = (lo + hi) / 2
        if cost.predict(clip_levels({n: mid * float(v) for n, v in raw.items()}, max_level, floor)) <= target:
            hi = mid
        else:
            lo = mid
    return clip_levels({n: hi * float(v) for n, v in raw.items()}, max_level, floor)


def level_for_target(
    levels: Mapping[str, float], name: str, cost: CostModel, target: float, max_level: float
) -> float | None:
    """The smallest level of ``name`` alone (others fixed) that brings the cost to ``target``;
    ``None`` when even ``max_level`` does not (NetAdapt skips that layer this iteration)."""
    base = dict(levels)
    start = float(base.get(name, 0.0))
    if cost.predict({**base, name: max_level}) > target + 1e-12:
        return None
    if cost.predict(base) <= target:
        return start
    lo, hi = start, max_level
    while hi - lo > _TOL:
        mid = (lo + hi) / 2
        if cost.predict({**base, name: mid}) <= target:
            hi = mid
        else:
            lo = mid
    return hi


def budget_target(space: SearchSpace, cost: CostModel) -> float:
    """The value the cost model must reach: the budget's, or (no budget) the dense value."""
    if space.budget is None:
        return cost.dense
    return float(space.budget.value)


def cost_model_for(
    model: Any,
    example_input: Any,
    space: SearchSpace,
    *,
    structured: bool,
    latency: Any = None,
    table_path: Any = None,
    units: Iterable[Iterable[str]] = (),
) -> tuple[CostModel, list[LayerInfo]]:
    """The cost model a search generator should allocate against for ``space``'s budget.

    Structured pruning (whole filters or channels, thinned away) of MACs or parameters: a
    :class:`LayerCost` (a layer also loses the inputs its producers drop). Unstructured pruning, or
    a weights budget: the space's linear shares, exact there. A latency budget: the measured
    per-layer table, cached at ``table_path`` (``latency`` holds the measuring conditions:
    ``device``, ``batch_size``, ``threads``); it needs structured pruning, since masked weights
    take as long as dense ones. ``units``: tensors the pruner prunes together (see :class:`UnitCost`).
    """
    cost, layers = _cost_model(model, example_input, space, structured, latency, table_path)
    units = [list(u) for u in units]
    return (UnitCost(cost, units) if any(len(u) > 1 for u in units) else cost), layers


def _cost_model(
    model: Any, example_input: Any, space: SearchSpace, structured: bool, latency: Any, table_path: Any
) -> tuple[CostModel, list[LayerInfo]]:
    layers = describe_layers(model, example_input)
    metric = space.budget.metric if space.budget is not None else "macs"
    if metric == "latency_ms":
        if not structured:
            raise ValueError(
                "a latency budget needs a target that removes whole filters or channels "
                "(filters, channels, coupled): masked weights run as long as dense ones"
            )
        from pathlib import Path

        from prunecli.iterative.latency_table import LatencyCost, load_or_measure

        table = load_or_measure(
            Path(table_path) if table_path is not None else None,
            layers,
            space.shares,
            model,
            tuple(example_input.shape[1:]),
            device=getattr(latency, "device", "cpu"),
            batch_size=getattr(latency, "batch_size", 1),
            threads=getattr(latency, "threads", None),
        )
        return LatencyCost(table, layers), layers
    if structured and metric in ("macs", "params"):
        return LayerCost(layers, metric), layers
    return ShareCost(space.shares, metric), layers
