"""Objectives: *what the level counts*. A fraction of the pruned tensors' weights, of all the
model's parameters, or of the model's multiply-accumulates (MACs, as ``prunecli report`` counts
them in :mod:`prunecli.report.compute`).

The weights objective is Distiller's: each tensor (uniform) or the listed tensors together
(global) lose that fraction of their weights. The parameter and MAC objectives *measure* a set
of masks as thinning will see it: a layer keeps ``density x (live input channels)`` of its
weights and MACs, where an input channel is live while any tensor producing it (per the
dependency graph) keeps it. The pruner then searches the weight level that meets them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from prunecli.engine.registry import Registry


class Objective:
    kind: str = ""
    #: True when the level is each tensor's own fraction of weights (no measurement needed)
    per_tensor: bool = False

    def prepare(self, model: nn.Module, example_input: Any) -> None:
        """Measure whatever :meth:`removed` needs (once, and again after thinning)."""

    def removed(self, masks: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor]) -> float:
        """The fraction of the objective's total that these masks remove."""
        raise NotImplementedError


OBJECTIVES: Registry[Callable[..., Objective]] = Registry("objective")


@OBJECTIVES.register("weights")
class WeightsObjective(Objective):
    """Fraction of the listed tensors' weights (Distiller's sparsity levels)."""

    kind = "weights"
    per_tensor = True

    def removed(self, masks, params):
        zeros = sum(int((m == 0).sum()) for m in masks.values())
        total = sum(m.numel() for m in masks.values())
        return zeros / total if total else 0.0


class LayerObjective(Objective):
    """Counts per convolution / linear layer, scaled by what the masks leave of it."""

    def __init__(self, narrow_heads: bool = False) -> None:
        #: read the attention's input channels as thinning with ``narrow_heads`` will: position j of
        #: every head is one channel (otherwise a head is, and it is live while any position is)
        self.narrow_heads = narrow_heads
        self.layers: dict[str, float] = {}  # weight name -> what the layer counts
        #: weight name -> an amount that shrinks only with the weight's kept rows (attention products)
        self.by_rows: dict[str, float] = {}
        self.total = 0.0
        self.graph: Any = None

    def layer_amounts(self, model: nn.Module, example_input: Any) -> dict[str, float]:
        raise NotImplementedError

    def prepare(self, model, example_input):
        if example_input is None:
            raise ValueError(f"the {self.kind} objective needs an example input to measure the model")
        self.layers = self.layer_amounts(model, example_input)
        self.total = self.grand_total(model) + float(sum(self.by_rows.values()))
        try:
            from prunecli.graph import build_dependency_graph

            self.graph = build_dependency_graph(model, example_input, narrow_heads=self.narrow_heads)
        except Exception:  # noqa: BLE001 -- an untraceable model: input channels count as live
            self.graph = None

    def grand_total(self, model: nn.Module) -> float:
        return float(sum(self.layers.values()))

    def _live_inputs(
        self, name: str, masks: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor]
    ) -> float:
        if self.graph is None or params[name].dim() < 2:
            return 1.0
        group = self.graph.group_of(name, 1)
        if group is None:
            return 1.0
        alive = torch.zeros(group.size, dtype=torch.bool)
        for member in group.producers():
            tensor = params.get(member.tensor)
            if tensor is None or tensor.dim() < 2:
                continue
            mask = masks.get(member.tensor)
            rows = (
                torch.ones(tensor.size(0), dtype=torch.bool)
                if mask is None
                else (mask.reshape(mask.size(0), -1) != 0).any(dim=1).cpu()
            )
            # block b of the tensor is channel b + offset; a packed tensor (q/k/v) holds one member per
            # part, each covering only its own rows
            per_block = rows.reshape(-1, member.block).any(dim=1)
            lo, hi = max(0, member.offset), min(group.size, member.offset + per_block.numel())
            if lo < hi:
                alive[lo:hi] |= per_block[lo - member.offset : hi - member.offset]
        if not any(m.tensor in params and params[m.tensor].dim() > 1 for m in group.producers()):
            return 1.0
        return float(alive.float().mean())

    def removed(self, masks, params):
        if not self.total:
            return 0.0
        gone = 0.0
        for name, amount in self.layers.items():
            if name not in params:
                continue
            mask = masks.get(name)
            density = float((mask != 0).sum()) / mask.numel() if mask is not None else 1.0
            gone += amount * (1.0 - density * self._live_inputs(name, masks, params))
        for name, amount in self.by_rows.items():
            mask = masks.get(name)
            if name not in params or mask is None:
                continue
            kept_rows = (mask.reshape(mask.size(0), -1) != 0).any(dim=1).float().mean()
            gone += amount * (1.0 - float(kept_rows))
        return gone / self.total


@OBJECTIVES.register("parameters")
class ParametersObjective(LayerObjective):
    """Fraction of every parameter of the model."""

    kind = "parameters"

    def layer_amounts(self, model, example_input):
        from prunecli.report.compute import compute_summary

        return {
            r.weight: float(r.weights_volume)
            for r in compute_summary(model, example_input)
            if r.scaling == "layer"
        }

    def grand_total(self, model):
        return float(sum(p.numel() for p in model.parameters()))


@OBJECTIVES.register("macs")
class MacsObjective(LayerObjective):
    """Fraction of the model's MACs (convolutions, linear layers and attention, as ``prunecli report``
    counts them). An attention's two matrix products shrink with the kept rows of its q/k/v weight."""

    kind = "macs"

    def layer_amounts(self, model, example_input):
        from prunecli.report.compute import compute_summary

        rows = compute_summary(model, example_input)
        self.by_rows = {r.weight: float(r.macs) for r in rows if r.scaling == "rows"}
        return {r.weight: float(r.macs) for r in rows if r.scaling == "layer"}


#: keys of an objective mapping that belong to the entry (its level), not to the objective's class
ENTRY_KEYS = ("fraction",)


def build_objective(spec: Mapping[str, Any]) -> Objective:
    options = {k: v for k, v in spec.items() if k not in ("kind", *ENTRY_KEYS)}
    return OBJECTIVES.get(str(spec["kind"]))(**options)
