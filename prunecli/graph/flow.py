"""Channel ids flowing through a traced graph.

Every channel of every tensor value gets an integer id; operations that tie channels together
(residual adds, a BatchNorm after a conv, concatenation offsets...) add union edges between ids.
Connected components of that graph are single channels shared by many tensors. Anything the walk
cannot follow blocks the channels it touches (with a reason), so thinning never guesses.

A tensor value is described by :class:`TInfo`: a *compact* id array with the tensor's rank whose
tracked dims have full size and untracked dims size 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prunecli.graph.model import QueryScale, ReaderRecord, SizeAttribute, TensorRecord
from prunecli.graph.zeros import CombineRule, ParamOperand


@dataclass
class TInfo:
    """What the walk knows about one tensor value."""

    shape: tuple[int, ...]
    tdims: tuple[int, ...] = ()  # dims whose channels are tracked
    ids: np.ndarray | None = None  # compact array (see module docstring)
    param: str | None = None  # this value is (a view of) a parameter or buffer...
    pdims: tuple[int | None, ...] | None = None  # ...and tensor dim -> parameter dim

    @property
    def tracked(self) -> bool:
        return self.ids is not None and bool(self.tdims)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def along(self, dim: int) -> np.ndarray | None:
        """The ids along one tracked dim when it is the only tracked dim."""
        if not self.tracked or self.tdims != (dim,):
            return None
        return self.ids.reshape(-1)


class Flow:
    """Mutable state of the walk: id allocation, unions, records, rules and blocked ids."""

    def __init__(self, prune_normalized: bool = False, narrow_heads: bool = False) -> None:
        #: channels normalised by LayerNorm/GroupNorm are prunable (approximately) instead of kept
        self.prune_normalized = prune_normalized
        #: attention heads lose channels together (every head narrowed alike) instead of going whole
        self.narrow_heads = narrow_heads
        self.query_scales: list[QueryScale] = []
        self.normalized: list[tuple[np.ndarray, str]] = []
        self.size_attributes: list[SizeAttribute] = []
        self.unsliceable_norms: list[tuple[str, str]] = []
        self.num_ids = 0
        self.edges_a: list[np.ndarray] = []
        self.edges_b: list[np.ndarray] = []
        self.records: dict[tuple[str, int], TensorRecord] = {}
        self.readers: list[ReaderRecord] = []
        self.rules: list = []
        self.blocked: list[tuple[np.ndarray, str]] = []
        self.module_kinds: dict[str, str] = {}

    # -- ids ---------------------------------------------------------------------------
    def fresh(self, shape: tuple[int, ...]) -> np.ndarray:
        n = int(np.prod(shape)) if shape else 1
        ids = np.arange(self.num_ids, self.num_ids + n, dtype=np.int64).reshape(shape)
        self.num_ids += n
        return ids

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
        self.edges_a.append(a.reshape(-1).copy())
        self.edges_b.append(b.reshape(-1).copy())

    def block(self, ids: np.ndarray | None, reason: str) -> None:
        if ids is not None and np.size(ids):
            self.blocked.append((np.asarray(ids).reshape(-1), reason))

    def normalize(self, ids: np.ndarray, reason: str) -> None:
        """Channels whose removal changes a norm's statistics: kept, unless ``prune_normalized``."""
        if self.prune_normalized:
            self.normalized.append((np.asarray(ids).reshape(-1), reason))
        else:
            self.block(ids, reason)

    def unsliceable_norm(self, ids: np.ndarray | None, where: str, reason: str) -> None:
        """A norm over channels that cannot be sliced: always kept, and noted when pruning norms was asked."""
        if self.prune_normalized:
            self.unsliceable_norms.append((where, reason))
        self.block(ids, f"'{where}': {reason}")

    def size_attribute(self, module: str, attr: str, ids: np.ndarray) -> None:
        self.size_attributes.append(SizeAttribute(module, attr, np.asarray(ids).reshape(-1)))

    def block_info(self, info, reason: str) -> None:
        """Block every tracked id inside ``info`` (a TInfo or nested tuples/lists of them)."""
        for item in iter_infos(info):
            if item.tracked:
                self.block(item.ids, reason)

    # -- records -----------------------------------------------------------------------
    def record(self, tensor: str, dim: int, role: str, ids: np.ndarray, module: str | None = None) -> None:
        ids = np.asarray(ids).reshape(-1)
        key = (tensor, dim)
        existing = self.records.get(key)
        if existing is None:
            self.records[key] = TensorRecord(tensor, dim, role, ids, module)  # type: ignore[arg-type]
        elif len(existing.ids) == len(ids):
            self.union(existing.ids, ids)  # a module called twice reads/writes the same slices
        else:
            self.block(ids, f"tensor '{tensor}' is used with different sizes along dim {dim}")
            self.block(existing.ids, f"tensor '{tensor}' is used with different sizes along dim {dim}")

    def reader(self, tensor: str | None, dim: int, ids: np.ndarray) -> None:
        ids = np.asarray(ids)
        if ids.ndim == 1:
            ids = ids[:, None]
        self.readers.append(ReaderRecord(tensor, dim, ids))

    # -- common value patterns ---------------------------------------------------------
    def combine(self, shape: tuple[int, ...], inputs: list, mode: str, node_name: str) -> TInfo:
        """Element-wise op over broadcast ``inputs`` (TInfo or scalars): add/sub (``all``) or mul (``any``)."""
        tensors = [x for x in inputs if isinstance(x, TInfo)]
        nd = len(shape)
        out_tdims: set[int] = set()
        for t in tensors:
            lead = nd - t.ndim
            for d in t.tdims if t.tracked else ():
                if t.shape[d] == shape[lead + d]:
                    out_tdims.add(lead + d)
        if not out_tdims:
            return TInfo(shape)
        tdims = tuple(sorted(out_tdims))
        compact = tuple(shape[d] if d in out_tdims else 1 for d in range(nd))
        out = self.fresh(compact)
        operands: list = []
        for x in inputs:
            if not isinstance(x, TInfo):
                operands.append(bool(mode == "any" and x == 0))
                continue
            operands.append(self._operand(x, shape, compact, tdims, out, node_name))
        self.rules.append(CombineRule(operands, out, mode))
        return TInfo(shape, tdims, out)

    def _operand(self, x: TInfo, shape, compact, tdims, out: np.ndarray, node_name: str):
        nd = len(shape)
        lead = nd - x.ndim
        full = [d for d in tdims if d >= lead and x.shape[d - lead] == shape[d]]
        if x.tracked:
            xt = {d + lead for d in x.tdims}
            if not set(full) <= xt:
                reason = f"'{node_name}' combines channels with a tensor thinning cannot follow"
                self.block(out, reason)
                self.block(x.ids, reason)
                return False
            if any(x.shape[d - lead] != shape[d] for d in xt):
                # broadcast along a tracked dim: its channel count must stay as it is
                self.block(x.ids, f"'{node_name}' broadcasts these channels over others")
                return False
            aligned = np.broadcast_to(x.ids.reshape((1,) * lead + x.ids.shape), compact)
            self.union(aligned, out)
            return aligned
        if not full:
            return False
        if x.param is not None and x.pdims is not None and len(full) == 1 and len(tdims) == 1:
            pdim = x.pdims[full[0] - lead]
            if pdim is not None:
                self.record(x.param, pdim, "out", out.reshape(-1))
                return ParamOperand(x.param, pdim)
        self.block(out, f"'{node_name}' combines channels with a tensor thinning cannot follow")
        return False

    def combine_shared(self, shape: tuple[int, ...], inputs: list[TInfo], node_name: str, dim: int) -> TInfo:
        """Concatenation along an untracked dim (tokens): every input carries the same channels."""

        def squash(s: tuple[int, ...]) -> tuple[int, ...]:
            return s[:dim] + (1,) + s[dim + 1 :]

        pseudo = [TInfo(squash(t.shape), t.tdims, t.ids, t.param, t.pdims) for t in inputs]
        out = self.combine(squash(shape), pseudo, "all", node_name)
        return TInfo(shape, out.tdims, out.ids)

    def passthrough_new(self, x: TInfo, shape: tuple[int, ...]) -> TInfo:
        """Same channels, values not zero-preserving (sigmoid): new ids tied to the input."""
        if not x.tracked:
            return TInfo(shape)
        out = self.fresh(x.ids.shape)
        self.union(out, x.ids)
        return TInfo(shape, x.tdims, out)


def iter_infos(value):
    if isinstance(value, TInfo):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from iter_infos(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from iter_infos(v)
