"""The public result of dependency analysis: channel groups and their member tensors.

A group is one channel index space shared by several tensors: removing group channel ``c``
means removing the slice ``[(c - offset) * block, (c - offset + 1) * block)`` along ``dim`` of
every member. The internal per-channel bookkeeping that thinning needs (which channel ids each
tensor index belongs to, how zeros propagate) lives in :class:`ChannelFlow`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Role = Literal["out", "in"]


@dataclass(frozen=True)
class Member:
    """One tensor slice in a group: ``out`` produces the channel, ``in`` reads it."""

    tensor: str
    dim: int
    offset: int
    block: int
    role: Role

    def indices(self, channel: int) -> range:
        start = (channel - self.offset) * self.block
        return range(start, start + self.block)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tensor": self.tensor,
            "dim": self.dim,
            "offset": self.offset,
            "block": self.block,
            "role": self.role,
        }


@dataclass
class ChannelGroup:
    """Channels that must be kept or removed together across all ``members``."""

    index: int
    size: int
    members: list[Member]
    prunable: bool = True
    reason: str | None = None
    #: set when the channels pass through a LayerNorm/GroupNorm and were made prunable on request
    #: (``prune_normalized``): removing them changes the norm's statistics, so thinning is approximate
    normalized: str | None = None

    def producers(self) -> list[Member]:
        return [m for m in self.members if m.role == "out"]

    def consumers(self) -> list[Member]:
        return [m for m in self.members if m.role == "in"]

    def tensors(self) -> list[str]:
        return sorted({m.tensor for m in self.members})

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "size": self.size,
            "prunable": self.prunable,
            "reason": self.reason,
            "normalized": self.normalized,
            "members": [m.to_dict() for m in self.members],
        }


@dataclass
class TensorRecord:
    """Which channel id each index of ``tensor`` along ``dim`` carries (one id per index)."""

    tensor: str
    dim: int
    role: Role
    ids: np.ndarray  # int64, length == tensor.shape[dim]
    module: str | None = None  # owning module, for attribute updates


@dataclass
class ReaderRecord:
    """A weight that reads channels: index ``k`` along ``dim`` multiplies channel ids ``ids[k, :]``.

    Removing those channels keeps the function when either the values are zero (filters) or this
    weight slice is zero (channels).
    """

    tensor: str | None  # None: a value-only reader (norm statistics, attention scores), no weight slice
    dim: int
    ids: np.ndarray  # int64, shape (tensor.shape[dim], m)


@dataclass
class SizeAttribute:
    """A module attribute that mirrors a channel count (``VisionTransformer.hidden_dim``, a number
    of attention heads): after thinning it is set to the number of ``ids`` kept (one id per unit)."""

    module: str
    attr: str
    ids: np.ndarray


@dataclass
class QueryScale:
    """Attention whose heads may be narrowed: softmax divides ``q . k`` by ``sqrt(head_dim)``.

    When thinning keeps ``h'`` of the ``h`` positions ``ids`` of a head, the query rows (part
    ``part`` of ``parts`` equal parts of ``tensors`` along dim 0: q of a packed q/k/v weight and
    bias) are multiplied by ``sqrt(h' / h)`` so the scores, hence the function, stay the same.
    """

    tensors: tuple[str, ...]
    ids: np.ndarray
    parts: int = 3
    part: int = 0


@dataclass
class ChannelFlow:
    """Per-channel facts gathered while walking the traced graph (used by thinning)."""

    num_ids: int
    component: np.ndarray  # id -> component (a single channel shared by tensors)
    records: list[TensorRecord]
    readers: list[ReaderRecord]
    zero_rules: list[Any]  # prunecli.graph.zeros rules, in graph order
    blocked: dict[int, str]  # component -> reason it must be kept
    group_of_component: np.ndarray  # component -> group index (-1: no tensor member)
    modules: dict[str, str] = field(default_factory=dict)  # module name -> kind for attribute updates
    normalized: dict[int, str] = field(
        default_factory=dict
    )  # component -> norm that makes removal approximate
    size_attributes: list[SizeAttribute] = field(default_factory=list)
    #: norms that cannot be sliced although ``prune_normalized`` was asked: (module or node, reason)
    unsliceable_norms: list[tuple[str, str]] = field(default_factory=list)
    #: attention whose heads were narrowed (``narrow_heads``): query rows to rescale
    query_scales: list[QueryScale] = field(default_factory=list)


@dataclass
class DependencyGraph:
    """Channel groups of a model, plus the channel-level flow thinning needs."""

    groups: list[ChannelGroup]
    flow: ChannelFlow
    notes: list[str] = field(default_factory=list)
    prune_normalized: bool = False
    narrow_heads: bool = False
    _index: dict[tuple[str, int], list[ChannelGroup]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for group in self.groups:
            for m in group.members:
                entry = self._index.setdefault((m.tensor, m.dim), [])
                if group not in entry:
                    entry.append(group)

    def group_of(self, param_name: str, dim: int) -> ChannelGroup | None:
        """The group covering ``param_name`` along ``dim`` (the first one if several share it)."""
        groups = self._index.get((param_name, dim))
        return groups[0] if groups else None

    def groups_of(self, param_name: str, dim: int) -> list[ChannelGroup]:
        """Every group touching ``param_name`` along ``dim`` (several after a concatenation)."""
        return list(self._index.get((param_name, dim), []))

    def prunable_groups(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.prunable]

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [g.to_dict() for g in self.groups],
            "notes": list(self.notes),
            "prune_normalized": self.prune_normalized,
            "narrow_heads": self.narrow_heads,
        }
