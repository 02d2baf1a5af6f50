"""Targets: *what* is pruned. A target cuts tensors into groups that are kept or removed whole.

A target turns the parameter names a pruner lists into :class:`Unit` objects (one tensor, or
several tensors pruned together such as an attention block's projections). For each unit it
offers a grouped *view* of any tensors shaped like the unit's parameters (one row per group, so
a metric can reduce the weights, or accumulated gradient products, row by row) and expands a
per-group keep vector back into one mask per tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prunecli.engine.registry import Registry


class TargetError(ValueError):
    """A target that cannot apply to a tensor or module (its message says why, ``hint`` the fix)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Unit:
    """Groups ranked together: one tensor, or the tensors of one module pruned as one."""

    name: str
    tensors: tuple[str, ...]
    #: free per-target data (head layout, coupled-group membership)
    layout: Any = field(default=None, compare=False)


class Target:
    """Base class: one tensor per unit; subclasses say how it splits into groups."""

    kind: str = ""
    #: True when the allocation picks single elements (Distiller's level semantics: ties go too)
    elementwise: bool = False
    #: True when the groups are output channels of a convolution or linear layer
    output_channels: bool = False

    def units(self, names: Sequence[str], model: nn.Module) -> list[Unit]:
        return [Unit(name, (name,)) for name in names]

    def check(self, unit: Unit, params: Mapping[str, torch.Tensor]) -> None:
        """Raise :class:`TargetError` when the unit's tensors do not fit this target."""

    def view(self, unit: Unit, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``[groups, elements per group]``: the unit's tensors grouped row by row."""
        raise NotImplementedError

    def expand(
        self, unit: Unit, keep: torch.Tensor, params: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """One mask per tensor of the unit from a ``[groups]`` 0/1 vector."""
        raise NotImplementedError

    def reduce(self, metric: Any, unit: Unit, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """A row metric's score of every group: ``metric.reduce`` over the grouped view."""
        return metric.reduce(self.view(unit, tensors))

    def parts(self, unit: Unit, tensors: Mapping[str, torch.Tensor]) -> list[tuple[int, torch.Tensor]]:
        """The unit's groups layer by layer: ``(first group, [its groups, elements])`` per layer.

        One part (the whole view) unless the unit joins layers whose groups are compared within
        each layer (a coupled group: FPGM measures distances layer by layer, then adds them).
        """
        return [(0, self.view(unit, tensors))]

    def sizes(self, unit: Unit, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Elements per group (what removing it saves under the weights objective)."""
        view = self.view(unit, params)
        return torch.full((view.size(0),), float(view.size(1)))

    def count(self, unit: Unit, params: Mapping[str, torch.Tensor]) -> int:
        return int(self.sizes(unit, params).numel())

    def kinds(self) -> set[str]:
        """The kinds of group this target ranks (several for a per-tensor mix)."""
        return {self.kind}

    def is_elementwise(self, unit: Unit) -> bool:
        return self.elementwise


TARGETS: Registry[Callable[..., Target]] = Registry("target")


def _only(unit: Unit) -> str:
    return unit.tensors[0]


class SliceTarget(Target):
    """Whole slices along one dimension: filters (dim 0) or input channels (dim 1)."""

    dim: int = 0
    min_rank: int = 2
    #: the tensor ranks it accepts, when narrower than ``min_rank`` and up (set per group type)
    ranks: frozenset[int] | None = None

    def check(self, unit, params):
        tensor = params[_only(unit)]
        if self.ranks is not None and tensor.dim() not in self.ranks:
            raise TargetError(
                f"{_only(unit)} has shape {tuple(tensor.shape)}: these {self.kind} need a tensor of rank "
                + " or ".join(str(r) for r in sorted(self.ranks))
            )
        if tensor.dim() < self.min_rank:
            raise TargetError(
                f"{_only(unit)} has shape {tuple(tensor.shape)}: {self.kind} needs a tensor with at least "
                f"{self.min_rank} dimensions"
            )

    def view(self, unit, tensors):
        tensor = tensors[_only(unit)]
        return tensor.movedim(self.dim, 0).reshape(tensor.size(self.dim), -1)

    def expand(self, unit, keep, params):
        tensor = params[_only(unit)]
        shape = [1] * tensor.dim()
        shape[self.dim] = tensor.size(self.dim)
        return {_only(unit): keep.to(tensor.dtype).reshape(shape).expand_as(tensor).contiguous()}

    def sizes(self, unit, params):
        tensor = params[_only(unit)]
        return torch.full((tensor.size(self.dim),), float(tensor.numel() // tensor.size(self.dim)))


@TARGETS.register("filters")
class FilterTarget(SliceTarget):
    """Output channels of a convolution (dim 0), with everything they hold."""

    kind = "filters"
    dim = 0
    output_channels = True


@TARGETS.register("channels")
class ChannelTarget(SliceTarget):
    """Input channels of a convolution (dim 1)."""

    kind = "channels"
    dim = 1


@TARGETS.register("rows")
class RowTarget(SliceTarget):
    """Rows of a Linear weight: its output features (torch stores ``[out, in]``)."""

    kind = "rows"
    dim = 0
    output_channels = True

    def check(self, unit, params):
        if params[_only(unit)].dim() != 2:
            raise TargetError(f"{_only(unit)} is not a 2-D (Linear) weight: {self.kind} need one")


@TARGETS.register("columns")
class ColumnTarget(RowTarget):
    """Columns of a Linear weight: its input features."""

    kind = "columns"
    dim = 1
    output_channels = False


@TARGETS.register("element")
class ElementTarget(Target):
    """Single weights (fine-grained, unstructured)."""

    kind = "element"
    elementwise = True

    def view(self, unit, tensors):
        return tensors[_only(unit)].reshape(-1, 1)

    def expand(self, unit, keep, params):
        tensor = params[_only(unit)]
        return {_only(unit): keep.to(tensor.dtype).reshape(tensor.shape)}

    def sizes(self, unit, params):
        return torch.ones(params[_only(unit)].numel())


class TensorTarget(Target):
    """The whole tensor as one group (Distiller's ``4D`` threshold: a layer kept or removed whole).

    Not offered to native entries: their allocations never remove a unit's last group.
    """

    kind = "tensor"

    def view(self, unit, tensors):
        return tensors[_only(unit)].reshape(1, -1)

    def expand(self, unit, keep, params):
        tensor = params[_only(unit)]
        return {_only(unit): keep.to(tensor.dtype).reshape([1] * tensor.dim()).expand_as(tensor).contiguous()}


@TARGETS.register("block")
class BlockTarget(Target):
    """Blocks of any shape over chosen axes: ``shape: [1, 4]`` on a Linear weight, ``[1, 1, 3, 3]`` kernels.

    ``axes`` names the dimensions ``shape`` applies to (default: the first ``len(shape)``); the
    other dimensions have blocks of size 1. Every blocked dimension must divide evenly.
    """

    kind = "block"

    def __init__(self, shape: Sequence[int], axes: Sequence[int] | None = None) -> None:
        self.shape = [int(v) for v in shape]
        if not self.shape or any(v < 1 for v in self.shape):
            raise TargetError(f"block shape must list positive sizes, got {list(shape)}")
        self.axes = list(axes) if axes is not None else list(range(len(self.shape)))
        if len(self.axes) != len(self.shape):
            raise TargetError(f"block axes {self.axes} and shape {self.shape} differ in length")

    def _blocks(self, tensor: torch.Tensor) -> list[int]:
        blocks = [1] * tensor.dim()
        for axis, size in zip(self.axes, self.shape):
            if not -tensor.dim() <= axis < tensor.dim():
                raise TargetError(f"axis {axis} does not exist in a tensor of shape {tuple(tensor.shape)}")
            blocks[axis] = size
        return blocks

    def check(self, unit, params):
        tensor = params[_only(unit)]
        for dim, (n, b) in enumerate(zip(tensor.shape, self._blocks(tensor))):
            if n % b:
                raise TargetError(
                    f"{_only(unit)} has {n} entries along dimension {dim}, not a multiple of the block size {b}"
                )

    def view(self, unit, tensors):
        tensor = tensors[_only(unit)]
        blocks = self._blocks(tensor)
        split: list[int] = []
        for n, b in zip(tensor.shape, blocks):
            split += [n // b, b]
        rank = tensor.dim()
        order = [2 * i for i in range(rank)] + [2 * i + 1 for i in range(rank)]
        return tensor.reshape(split).permute(order).reshape(-1, math.prod(blocks))

    def expand(self, unit, keep, params):
        tensor = params[_only(unit)]
        blocks = self._blocks(tensor)
        counts = [n // b for n, b in zip(tensor.shape, blocks)]
        rank = tensor.dim()
        grid = keep.to(tensor.dtype).reshape(counts + [1] * rank).expand(counts + blocks)
        inverse = [0] * (2 * rank)
        for i in range(rank):
            inverse[2 * i], inverse[2 * i + 1] = i, rank + i
        return {_only(unit): grid.permute(inverse).reshape(tensor.shape).contiguous()}


@TARGETS.register("kernels")
class KernelTarget(BlockTarget):
    """2-D kernels of a convolution: one group per (filter, input channel)."""

    kind = "kernels"

    def __init__(self) -> None:
        super().__init__([1, 1])

    def _blocks(self, tensor):
        if tensor.dim() < 3:
            raise TargetError(f"kernels need a convolution weight, got shape {tuple(tensor.shape)}")
        return [1, 1, *tensor.shape[2:]]


class DistillerBlockTarget(Target):
    """Distiller's ``Blocks`` of a convolution weight, ``block_shape: [repetitions, depth, 1, 1]``.

    With ``depth`` 1 a block is ``repetitions`` consecutive filters at one (channel, kernel
    position); otherwise the (filter, channel) pairs, read in storage order, are cut into runs of
    ``repetitions * depth``, and a block is one run at one kernel position. Not offered to native
    entries (their ``block`` target takes any shape over chosen axes).
    """

    kind = "blocks"

    def __init__(self, block_shape: Sequence[int] | None) -> None:
        if block_shape is None or len(block_shape) != 4:
            raise TargetError("Blocks need kwargs.block_shape as [repetitions, depth, height, width]")
        reps, depth, height, width = (int(v) for v in block_shape)
        if not height == width == 1:
            raise TargetError("only block shapes [repetitions, depth, 1, 1] are supported")
        self.reps, self.depth = reps, depth

    def _dims(self, tensor: torch.Tensor) -> tuple[int, int, int]:
        """``(block rows, elements per block, positions)``: the tensor seen as ``[rows, block, positions]``."""
        if tensor.dim() != 4:
            raise TargetError(f"Blocks need a 4D tensor, got shape {tuple(tensor.shape)}")
        filters, channels = tensor.size(0), tensor.size(1)
        kernel = tensor.size(2) * tensor.size(3)
        size = self.reps * self.depth
        if tensor.numel() % size != 0:
            raise TargetError(
                f"block shape {[self.reps, self.depth, 1, 1]} does not divide tensor shape {tuple(tensor.shape)}"
            )
        if self.depth > 1:
            return filters * channels // size, size, kernel
        return filters // self.reps, self.reps, channels * kernel

    def check(self, unit, params):
        self._dims(params[_only(unit)])

    def view(self, unit, tensors):
        tensor = tensors[_only(unit)]
        rows, size, positions = self._dims(tensor)
        return tensor.reshape(rows, size, positions).transpose(1, 2).reshape(-1, size)

    def expand(self, unit, keep, params):
        tensor = params[_only(unit)]
        rows, size, positions = self._dims(tensor)
        grid = keep.to(device=tensor.device, dtype=tensor.dtype).view(rows, 1, positions)
        return {_only(unit): grid.expand(rows, size, positions).contiguous().view(tensor.shape)}

    def sizes(self, unit, params):
        rows, size, positions = self._dims(params[_only(unit)])
        return torch.full((rows * positions,), float(size))

    def reduce(self, metric, unit, tensors):
        """Summed where the blocks lie, along the middle of ``[rows, block, positions]``, as
        Distiller sums them: the grouped view's copy would add the same numbers in another order
        and round differently. (Row metrics reduce along dimension 1, whatever the rank.)"""
        tensor = tensors[_only(unit)]
        return metric.reduce(tensor.reshape(self._dims(tensor))).reshape(-1)


@TARGETS.register("n:m")
class NMTarget(Target):
    """N:M semi-structured sparsity: of every M consecutive weights along the input dimension, N stay.

    The groups are single weights, but the choice is made inside each run of M (the allocation
    and the level are fixed by N and M, as sparse tensor cores require).
    """

    kind = "n:m"
    elementwise = True

    def __init__(self, n: int, m: int) -> None:
        if not 0 < n < m:
            raise TargetError(f"N:M needs 0 < N < M, got {n}:{m}")
        self.n, self.m = int(n), int(m)

    @property
    def level(self) -> float:
        return 1 - self.n / self.m

    def check(self, unit, params):
        tensor = params[_only(unit)]
        if tensor.dim() < 2:
            raise TargetError(f"{_only(unit)} has no input dimension (shape {tuple(tensor.shape)})")
        if tensor.size(1) % self.m:
            raise TargetError(
                f"{_only(unit)} has {tensor.size(1)} inputs, not a multiple of M={self.m}",
                f"use an M that divides {tensor.size(1)}, or leave {_only(unit)} out of weights",
            )

    def _runs(self, tensor: torch.Tensor) -> torch.Tensor:
        """``[runs, M]``: the input dimension moved last and cut into runs of M."""
        return tensor.movedim(1, -1).reshape(-1, self.m)

    def view(self, unit, tensors):
        return tensors[_only(unit)].reshape(-1, 1)

    def select(self, unit: Unit, scores: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Keep vector (in the tensor's element order) holding the N best of every run of M."""
        tensor = params[_only(unit)]
        runs = self._runs(scores.reshape(tensor.shape))
        best = torch.topk(runs, self.n, dim=1).indices
        keep = torch.zeros_like(runs).scatter_(1, best, 1.0)
        moved = list(tensor.movedim(1, -1).shape)
        return keep.reshape(moved).movedim(-1, 1).reshape(-1)

    def expand(self, unit, keep, params):
        tensor = params[_only(unit)]
        return {_only(unit): keep.to(tensor.dtype).reshape(tensor.shape)}

    def sizes(self, unit, params):
        return torch.ones(params[_only(unit)].numel())


@dataclass(frozen=True)
class HeadLayout:
    """Where each head lives: ``(tensor, dim, start of head 0, head width, stride between q/k/v)``."""

    heads: int
    slices: tuple[tuple[str, int, int, int, int], ...]  # tensor, dim, offset, width per head, copies


def _attention_layouts(model: nn.Module) -> dict[str, tuple[HeadLayout, set[str]]]:
    """Module name -> its head layout, for every attention block prunecli recognises."""
    found: dict[str, tuple[HeadLayout, set[str]]] = {}
    for mname, module in model.named_modules():
        prefix = f"{mname}." if mname else ""
        layout: HeadLayout | None = None
        if isinstance(module, nn.MultiheadAttention) and module._qkv_same_embed_dim:
            h, e = module.num_heads, module.embed_dim
            d = e // h
            entries = [(f"{prefix}in_proj_weight", 0, 0, d, 3)]
            if module.in_proj_bias is not None:
                entries.append((f"{prefix}in_proj_bias", 0, 0, d, 3))
            entries.append((f"{prefix}out_proj.weight", 1, 0, d, 1))
            layout = HeadLayout(h, tuple(entries))
        elif hasattr(module, "qkv") and hasattr(module, "proj") and hasattr(module, "num_heads"):
            # torchvision's Swin (ShiftedWindowAttention) and timm-style blocks: qkv Linear + proj
            h = int(module.num_heads)
            qkv, proj = module.qkv, module.proj
            if isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear) and qkv.out_features % (3 * h) == 0:
                d = qkv.out_features // (3 * h)
                entries = [(f"{prefix}qkv.weight", 0, 0, d, 3)]
                if qkv.bias is not None:
                    entries.append((f"{prefix}qkv.bias", 0, 0, d, 3))
                entries.append((f"{prefix}proj.weight", 1, 0, d, 1))
                layout = HeadLayout(h, tuple(entries))
        if layout is not None:
            found[mname] = (layout, {e[0] for e in layout.slices})
    return found


@TARGETS.register("heads")
class HeadTarget(Target):
    """Attention heads: each head's query/key/value rows and its output-projection columns, together.

    Listed ``weights`` select the attention blocks (any of a block's projection tensors, or the
    module name). Works for ``nn.MultiheadAttention`` (torchvision ViT) and qkv/proj blocks
    with ``num_heads`` (torchvision Swin).
    """

    kind = "heads"

    def units(self, names, model):
        layouts = _attention_layouts(model)
        units: list[Unit] = []
        unmatched = []
        for name in names:
            owner = next((m for m, (_, tensors) in layouts.items() if name in tensors or name == m), None)
            if owner is None:
                unmatched.append(name)
            elif not any(u.name == owner for u in units):
                layout, _ = layouts[owner]
                units.append(Unit(owner, tuple(e[0] for e in layout.slices), layout))
        if unmatched:
            raise TargetError(
                f"{', '.join(unmatched[:3])} {'belongs' if len(unmatched) == 1 else 'belong'} to no attention "
                "layer with heads "
                "(nn.MultiheadAttention, or a block with qkv, proj and num_heads)",
                "list a projection weight of an attention layer, or use target: rows for plain Linear layers",
            )
        return units

    def _index(self, entry: tuple[str, int, int, int, int], heads: int, head: int, size: int) -> list[int]:
        _, _, offset, width, copies = entry
        span = size // copies
        return [c * span + offset + head * width + i for c in range(copies) for i in range(width)]

    def view(self, unit, tensors):
        layout: HeadLayout = unit.layout
        rows = []
        for head in range(layout.heads):
            parts = []
            for entry in layout.slices:
                tensor = tensors[entry[0]]
                index = torch.tensor(self._index(entry, layout.heads, head, tensor.size(entry[1])))
                parts.append(tensor.index_select(entry[1], index.to(tensor.device)).reshape(-1))
            rows.append(torch.cat(parts))
        return torch.stack(rows)

    def expand(self, unit, keep, params):
        layout: HeadLayout = unit.layout
        masks = {}
        for entry in layout.slices:
            tensor = params[entry[0]]
            dim = entry[1]
            line = torch.ones(tensor.size(dim), dtype=tensor.dtype, device=tensor.device)
            for head in range(layout.heads):
                if not keep[head]:
                    line[self._index(entry, layout.heads, head, tensor.size(dim))] = 0
            shape = [1] * tensor.dim()
            shape[dim] = tensor.size(dim)
            masks[entry[0]] = line.reshape(shape).expand_as(tensor).contiguous()
        return masks


@TARGETS.register("coupled")
class CoupledTarget(Target):
    """A whole channel group of the dependency graph: every producer's filter of one channel together.

    This is the unit ``--auto-dependency`` prunes: convolutions joined by a residual add (or a
    concatenation) lose the same channels, so thinning can remove them. A unit's view holds, per
    group channel, the filters of every producer listed in the group.
    """

    kind = "coupled"
    output_channels = True

    def __init__(self, example_input: Any = None, graph: Any = None) -> None:
        self.example_input = example_input
        self.graph = graph

    def units(self, names, model):
        if self.graph is None:
            from prunecli.graph import build_dependency_graph

            if self.example_input is None:
                raise TargetError("the coupled target needs an example input to trace the model")
            self.graph = build_dependency_graph(model, self.example_input)
        params = dict(model.named_parameters())
        units: list[Unit] = []
        seen: set[int] = set()
        for name in names:
            group = self.graph.group_of(name, 0)
            if group is None:
                size = params[name].size(0)
                units.append(Unit(name, (name,), (size, ((name, 0, 1),))))
                continue
            if id(group) in seen:
                continue
            seen.add(id(group))
            members = tuple(
                (m.tensor, m.offset, m.block)
                for m in group.producers()
                if m.dim == 0 and m.tensor in params and params[m.tensor].dim() > 1
            )
            units.append(
                Unit(f"group:{name}", tuple(dict.fromkeys(m[0] for m in members)), (group.size, members))
            )
        return units

    def view(self, unit, tensors):
        n, members = unit.layout
        rows: list[list[torch.Tensor]] = [[] for _ in range(n)]
        for tensor_name, offset, block in members:
            tensor = tensors[tensor_name]
            per = tensor.reshape(tensor.size(0) // block, -1)
            for c in range(per.size(0)):
                rows[c + offset].append(per[c])
        width = max(sum(p.numel() for p in row) for row in rows)
        out = torch.zeros(n, width, dtype=next(iter(tensors.values())).dtype)
        for c, row in enumerate(rows):
            flat = torch.cat(row) if row else torch.zeros(0)
            out[c, : flat.numel()] = flat
        return out

    def parts(self, unit, tensors):
        _, members = unit.layout
        parts = []
        for tensor_name, offset, block in members:
            tensor = tensors[tensor_name]
            parts.append((offset, tensor.reshape(tensor.size(0) // block, -1)))
        return parts

    def expand(self, unit, keep, params):
        masks = {}
        for tensor_name, offset, block in unit.layout[1]:
            tensor = params[tensor_name]
            count = tensor.size(0) // block
            line = keep[offset : offset + count].repeat_interleave(block).to(tensor.dtype)
            shape = [tensor.size(0)] + [1] * (tensor.dim() - 1)
            masks[tensor_name] = line.reshape(shape).expand_as(tensor).contiguous()
        return masks


class MixedTarget(Target):
    """A different target per tensor (``weights: {name: target}``); each unit keeps its own."""

    kind = "mixed"

    def __init__(self, parts: Sequence[tuple[Target, Sequence[str]]]) -> None:
        self.parts = [(target, list(names)) for target, names in parts]
        self._owner: dict[str, Target] = {}
        self.output_channels = all(t.output_channels for t, _ in self.parts)
        self.elementwise = all(t.elementwise for t, _ in self.parts)

    def kinds(self) -> set[str]:
        return {t.kind for t, _ in self.parts}

    def units(self, names, model):
        units = []
        for target, own in self.parts:
            for unit in target.units(own, model):
                self._owner[unit.name] = target
                units.append(unit)
        return units

    def is_elementwise(self, unit):
        return self._owner[unit.name].elementwise

    def check(self, unit, params):
        self._owner[unit.name].check(unit, params)

    def view(self, unit, tensors):
        return self._owner[unit.name].view(unit, tensors)

    def expand(self, unit, keep, params):
        return self._owner[unit.name].expand(unit, keep, params)

    def sizes(self, unit, params):
        return self._owner[unit.name].sizes(unit, params)


def build_target(spec: Mapping[str, Any], *, example_input: Any = None) -> Target:
    """A target from its native-syntax mapping (``kind`` plus the target's own arguments)."""
    options = {k: v for k, v in spec.items() if k != "kind"}
    factory = TARGETS.get(str(spec["kind"]))
    if factory is CoupledTarget:
        options.setdefault("example_input", example_input)
    return factory(**options)


def threshold_target(group_type: str, tensor: torch.Tensor | None = None) -> Target:
    """The target a Distiller threshold on ``group_type`` keeps or removes (ValueError when none).

    The group type's meaning is :data:`prunecli.schedule.vocabulary.GROUP_TYPES`'s; with
    ``tensor`` its rank is checked too.
    """
    from prunecli.schedule.vocabulary import GROUP_TYPES

    group = GROUP_TYPES.get(group_type)
    if group is None or group.threshold is None:
        raise ValueError(f"unknown group type {group_type!r} for thresholding")
    if group.threshold == "tensor":
        return TensorTarget()
    if tensor is not None and tensor.dim() not in group.ranks:
        raise ValueError(
            f"{group_type} thresholding needs a tensor of rank {tuple(sorted(group.ranks))}, "
            f"got shape {tuple(tensor.shape)}"
        )
    return TARGETS.get(group.threshold)()


def ranking_target(group_type: str, block_shape: Sequence[int] | None = None) -> Target:
    """The target whose groups Distiller's ranked pruners rank for ``group_type`` (ValueError when none).

    The group type's meaning and the tensor ranks it fits are :data:`prunecli.schedule.vocabulary.GROUP_TYPES`'s.
    """
    from prunecli.schedule.vocabulary import GROUP_TYPES

    group = GROUP_TYPES.get(group_type)
    if group is None or group.ranking is None:
        raise ValueError(f"group_type {group_type!r} cannot be ranked")
    if group.ranking == "blocks":
        return DistillerBlockTarget(block_shape)
    target = TARGETS.get(group.ranking)()
    if isinstance(target, SliceTarget):
        target.ranks = group.ranks
    return target
