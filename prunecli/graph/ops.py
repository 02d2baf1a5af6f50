"""Per-operation rules: how each traced op moves, ties, reads or blocks channel ids.

Registries map module types, functions and method names to handlers. An operation without a
handler is *opaque*: every channel it touches is blocked (kept), so an unknown op can make the
analysis conservative but never wrong.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from prunecli.graph import layout
from prunecli.graph.flow import Flow, TInfo, iter_infos
from prunecli.graph.model import QueryScale
from prunecli.graph.zeros import AffineNormRule, CombineRule, DepthwiseRule, NormRule, ProducerRule


class Ctx:
    """What a handler sees: the node, its resolved arguments and the walk state."""

    def __init__(self, flow: Flow, node: fx.Node, env: dict[str, Any], shape: Any, root: nn.Module):
        self.flow = flow
        self.node = node
        self.env = env
        self.shape = shape
        self.root = root

    def value(self, arg: Any) -> Any:
        """A node argument as TInfo (tensors), nested containers, or the literal."""
        if isinstance(arg, fx.Node):
            return self.env.get(arg.name)
        if isinstance(arg, (tuple, list)):
            return type(arg)(self.value(a) for a in arg)
        if isinstance(arg, dict):  # a model returning a dict of outputs (FPN, segmentation models)
            return {key: self.value(a) for key, a in arg.items()}
        return arg

    def arg(self, index: int, name: str, default: Any = None) -> Any:
        if index < len(self.node.args):
            return self.node.args[index]
        return self.node.kwargs.get(name, default)

    def tensor(self, index: int = 0, name: str = "input") -> TInfo | None:
        v = self.value(self.arg(index, name))
        return v if isinstance(v, TInfo) else None

    def opaque(self, reason: str | None = None) -> Any:
        why = reason or f"'{self.node.name}' ({_describe(self.node)}) is not modelled; its channels are kept"
        for a in list(self.node.args) + list(self.node.kwargs.values()):
            self.flow.block_info(self.value(a), why)
        return untracked(self.shape)


def _describe(node: fx.Node) -> str:
    target = node.target
    name = getattr(target, "__name__", None) or str(target)
    return f"{node.op} {name}"


def untracked(shape: Any) -> Any:
    if isinstance(shape, tuple) and all(isinstance(s, int) for s in shape):
        return TInfo(shape)
    if isinstance(shape, (tuple, list)):
        return type(shape)(untracked(s) for s in shape)
    return None


def norm_dim(d: int, nd: int) -> int:
    return d + nd if d < 0 else d


# ---------------------------------------------------------------------------- generic ops
def same_ids(ctx: Ctx) -> Any:
    """Zero-preserving, shape-preserving op (ReLU, dropout, contiguous...)."""
    x = ctx.tensor()
    if x is None:
        return untracked(ctx.shape)
    return TInfo(ctx.shape, x.tdims, x.ids, x.param, x.pdims)


def new_ids(ctx: Ctx) -> Any:
    """Shape-preserving op with f(0) != 0 (sigmoid): same channels, values not zero."""
    x = ctx.tensor()
    if x is None:
        return untracked(ctx.shape)
    return ctx.flow.passthrough_new(x, ctx.shape)


def spatial(ctx: Ctx) -> Any:
    """Pooling/resizing: mixes positions within each channel (dim 1), never across channels."""
    x = ctx.tensor()
    if x is None or not x.tracked:
        return untracked(ctx.shape)
    if x.ndim < 3 or x.tdims != (1,):
        ctx.flow.block(x.ids, f"'{ctx.node.name}' mixes positions along a tracked channel dim")
        return untracked(ctx.shape)
    if ctx.shape[1] != x.shape[1]:
        return ctx.opaque()
    return TInfo(ctx.shape, (1,), x.ids)


def elementwise(mode: str) -> Callable[[Ctx], Any]:
    def handler(ctx: Ctx) -> Any:
        a = ctx.value(ctx.arg(0, "input"))
        b = ctx.value(ctx.arg(1, "other"))
        if not isinstance(ctx.shape, tuple) or not any(isinstance(v, TInfo) for v in (a, b)):
            return untracked(ctx.shape)
        if not all(isinstance(v, (TInfo, int, float, bool)) for v in (a, b)):
            return ctx.opaque()
        alpha = ctx.node.kwargs.get("alpha")
        if alpha is not None and not isinstance(alpha, (int, float)):
            return ctx.opaque()
        return ctx.flow.combine(ctx.shape, [a, b], mode, ctx.node.name)

    return handler


def reduce_dims(ctx: Ctx, dims: list[int] | None, keepdim: bool) -> Any:
    x = ctx.tensor()
    if x is None:
        return untracked(ctx.shape)
    nd = x.ndim
    dims = list(range(nd)) if dims is None else [norm_dim(d, nd) for d in dims]
    if not x.tracked:
        return untracked(ctx.shape)
    reduced = [d for d in x.tdims if d in dims]
    if reduced:
        norm = _enclosing_norm(ctx)
        if norm is not None:
            ctx.flow.unsliceable_norm(
                x.ids, norm, "a custom norm module computes statistics over these channels; prunecli "
                "can slice only torch's LayerNorm/GroupNorm (and modules that call F.layer_norm)",
            )  # fmt: skip
        ctx.flow.block(x.ids, f"'{ctx.node.name}' reduces over a tracked channel dim")
        return untracked(ctx.shape)
    ids = x.ids
    if keepdim:
        return TInfo(ctx.shape, x.tdims, ids)
    ids = ids.reshape(tuple(s for d, s in enumerate(ids.shape) if d not in dims))
    tdims = tuple(d - sum(1 for r in dims if r < d) for d in x.tdims)
    return TInfo(ctx.shape, tdims, ids)


def _dims_arg(value: Any) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return [value]
    return list(value)


def mean_like(ctx: Ctx) -> Any:
    dims = _dims_arg(ctx.arg(1, "dim"))
    keepdim = bool(ctx.arg(2, "keepdim", False))
    if (
        dims is None
        and ctx.node.op == "call_function"
        and len(ctx.node.args) < 2
        and "dim" not in ctx.node.kwargs
    ):
        dims = None
    return reduce_dims(ctx, dims, keepdim)


def flatten(ctx: Ctx) -> Any:
    x = ctx.tensor()
    if x is None:
        return untracked(ctx.shape)
    return layout.reshape(ctx.flow, x, ctx.shape, ctx.node.name)


def view(ctx: Ctx) -> Any:
    """x.view(...)/reshape(...): literal sizes touching tracked channels are blocked."""
    x = ctx.tensor()
    if x is None:
        return untracked(ctx.shape)
    if not x.tracked and x.param is not None:
        return TInfo(ctx.shape)
    args = list(ctx.node.args[1:])
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = list(args[0])
    if not args and "shape" in ctx.node.kwargs:
        args = list(ctx.node.kwargs["shape"])
    literal = {i for i, a in enumerate(args) if isinstance(a, int) and a not in (-1, 1)}
    mirrored = {i: found for i in literal if (found := _size_attribute(ctx, args[i])) is not None}
    out = layout.reshape(ctx.flow, x, ctx.shape, ctx.node.name, literal - set(mirrored))
    for i, (module, attr) in mirrored.items():
        ids = out.along(i) if isinstance(out, TInfo) else None
        if ids is not None:
            ctx.flow.size_attribute(module, attr, ids)
        elif isinstance(out, TInfo) and out.tracked:
            ctx.flow.block(out.ids, f"'{ctx.node.name}' reshapes channels to a size written as a constant")
    return out


#: module attributes that hold a channel count the module's own code reshapes to; thinning updates
#: them instead of keeping the channels: (module path, class name) -> attribute names
SIZE_ATTRIBUTES: dict[tuple[str, str], tuple[str, ...]] = {
    ("torchvision.models.vision_transformer", "VisionTransformer"): ("hidden_dim",),
}


def _size_attribute(ctx: Ctx, value: int) -> tuple[str, str] | None:
    """(module, attribute) when the literal ``value`` is a registered attribute of the module whose
    code runs this node (the innermost one on fx's module stack, else the root)."""
    stack = ctx.node.meta.get("nn_module_stack") or {}
    names = [v[0] for v in stack.values() if isinstance(v, tuple) and isinstance(v[0], str)]
    for name in reversed(names + [""]):
        module = _module_or_none(ctx.root, name) if name else ctx.root
        cls = type(module)
        for attr in SIZE_ATTRIBUTES.get((cls.__module__, cls.__name__), ()):
            if getattr(module, attr, None) == value:
                return name, attr
        if name:
            break  # only the innermost module's own code
    return None


def squeeze_like(ctx: Ctx) -> Any:
    x = ctx.tensor()
    if x is None:
        return untracked(ctx.shape)
    return layout.reshape(ctx.flow, x, ctx.shape, ctx.node.name)


def permute(ctx: Ctx) -> Any:
    x = ctx.tensor()
    if x is None:
        return untracked(ctx.shape)
    dims = list(ctx.node.args[1:]) or list(ctx.node.kwargs.get("dims", ()))
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = list(dims[0])
    if not all(isinstance(d, int) for d in dims):
        return ctx.opaque()
    perm = [norm_dim(d, x.ndim) for d in dims]
    return layout.permute(x, perm, ctx.shape)


def transpose(ctx: Ctx) -> Any:
    x = ctx.tensor()
    if x is None:
        return untracked(ctx.shape)
    d0, d1 = ctx.arg(1, "dim0"), ctx.arg(2, "dim1")
    if not (isinstance(d0, int) and isinstance(d1, int)):
        return ctx.opaque()
    perm = list(range(x.ndim))
    d0, d1 = norm_dim(d0, x.ndim), norm_dim(d1, x.ndim)
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return layout.permute(x, perm, ctx.shape)


def expand(ctx: Ctx) -> Any:
    """expand keeps existing dims (size-1 dims grow): channels unchanged, params keep their dims."""
    x = ctx.tensor()
    if x is None:
        return untracked(ctx.shape)
    lead = len(ctx.shape) - x.ndim
    if x.tracked:
        if any(x.shape[d] != ctx.shape[d + lead] for d in x.tdims):
            return ctx.opaque()
        ids = x.ids.reshape((1,) * lead + x.ids.shape)
        return TInfo(ctx.shape, tuple(d + lead for d in x.tdims), ids)
    pdims = ((None,) * lead + x.pdims) if x.pdims is not None else None
    return TInfo(ctx.shape, param=x.param, pdims=pdims)


def cat(ctx: Ctx) -> Any:
    tensors = ctx.value(ctx.arg(0, "tensors"))
    dim = ctx.arg(1, "dim", 0)
    if not isinstance(tensors, (tuple, list)) or not all(isinstance(t, TInfo) for t in tensors):
        return ctx.opaque()
    nd = len(ctx.shape)
    dim = norm_dim(dim, nd)
    flow = ctx.flow
    if not any(t.tracked for t in tensors):
        return untracked(ctx.shape)
    tracks_dim = any(t.tracked and dim in t.tdims for t in tensors)
    if tracks_dim:
        others = {d for t in tensors if t.tracked for d in t.tdims} - {dim}
        if others:
            return ctx.opaque()
        parts = []
        for t in tensors:
            ids = t.along(dim)
            if ids is None:
                ids = flow.fresh((t.shape[dim],))
                flow.block(
                    ids, f"'{ctx.node.name}' concatenates channels from a tensor thinning cannot follow"
                )
            parts.append(ids)
        ids = np.concatenate(parts)
        compact = tuple(ctx.shape[d] if d == dim else 1 for d in range(nd))
        return TInfo(ctx.shape, (dim,), ids.reshape(compact))
    # concatenation along another dim (tokens): all inputs share the channels
    return flow.combine_shared(ctx.shape, list(tensors), ctx.node.name, dim)


def split(ctx: Ctx, chunks: bool) -> Any:
    x = ctx.tensor(0, "tensor" if ctx.node.op == "call_function" else "input")
    if x is None:
        x = ctx.tensor()
    if x is None:
        return untracked(ctx.shape)
    size_arg = ctx.arg(1, "chunks" if chunks else "split_size_or_sections")
    if size_arg is None:
        size_arg = ctx.node.kwargs.get("split_size")
    dim = norm_dim(ctx.arg(2, "dim", 0), x.ndim)
    shapes = ctx.shape
    if not x.tracked or dim not in x.tdims:
        return tuple(TInfo(s, x.tdims, x.ids) if x.tracked else TInfo(s) for s in shapes)
    if len(x.tdims) != 1:
        ctx.flow.block(x.ids, f"'{ctx.node.name}' splits a tensor with several tracked dims")
        return untracked(shapes)
    ids = x.ids.reshape(-1)
    sizes = [s[dim] for s in shapes]
    pieces, start = [], 0
    for n in sizes:
        pieces.append(ids[start : start + n])
        start += n
    equal = len(set(sizes)) == 1
    literal_sizes = not chunks and not isinstance(size_arg, fx.Node)
    if equal and not literal_sizes:
        # equal pieces whose size follows the channel count: tie them index-wise so every
        # piece loses the same channels and the split point stays where the model expects it
        for p in pieces[1:]:
            ctx.flow.union(pieces[0], p)
    else:
        ctx.flow.block(
            ids,
            f"'{ctx.node.name}' splits channels at fixed positions; removing channels would move them",
        )
    out = []
    for s, p in zip(shapes, pieces):
        compact = tuple(s[d] if d == dim else 1 for d in range(len(s)))
        out.append(TInfo(s, (dim,), p.reshape(compact)))
    return tuple(out)


def getitem(ctx: Ctx) -> Any:
    base = ctx.value(ctx.node.args[0])
    index = ctx.node.args[1]
    if not isinstance(base, TInfo):
        if isinstance(base, (tuple, list)) and isinstance(index, int):
            return base[index]
        if isinstance(base, (tuple, list)):
            ctx.flow.block_info(base, f"'{ctx.node.name}' indexes a container in a way not modelled")
        return untracked(ctx.shape)
    return index_tensor(ctx, base, index)


def index_tensor(ctx: Ctx, x: TInfo, index: Any) -> Any:
    if not isinstance(index, tuple):
        index = (index,)
    if any(isinstance(i, fx.Node) for i in index) or not isinstance(ctx.shape, tuple):
        return ctx.opaque()
    n_real = sum(1 for i in index if i is not None and i is not Ellipsis)
    expanded: list[Any] = []
    for i in index:
        if i is Ellipsis:
            expanded.extend([slice(None)] * (x.ndim - n_real))
        else:
            expanded.append(i)
    expanded.extend([slice(None)] * (x.ndim - sum(1 for i in expanded if i is not None)))
    if not x.tracked:
        return TInfo(ctx.shape)
    ids = x.ids
    sel: list[Any] = []
    src = 0
    out_dims: list[int] = []  # output dim for each kept source dim
    out_pos = 0
    for i in expanded:
        if i is None:
            sel.append(None)
            out_pos += 1
            continue
        tracked = src in x.tdims
        if isinstance(i, slice):
            full = i == slice(None) or (i.start in (None, 0) and i.stop is None and i.step in (None, 1))
            if tracked and not full:
                ctx.flow.block(ids, f"'{ctx.node.name}' slices channels at fixed positions")
                return untracked(ctx.shape)
            sel.append(slice(None) if tracked else slice(0, 1))
            out_dims.append(out_pos)
            out_pos += 1
        elif isinstance(i, int):
            if tracked:
                ctx.flow.block(ids, f"'{ctx.node.name}' reads a channel by its position")
                return untracked(ctx.shape)
            sel.append(0)
        else:
            return ctx.opaque()
        src += 1
    new_ids = ids[tuple(sel)]
    tdims = tuple(d for d in range(new_ids.ndim) if new_ids.shape[d] > 1)
    if not tdims:
        return untracked(ctx.shape)
    return TInfo(ctx.shape, tdims, np.ascontiguousarray(new_ids))


def nontensor(ctx: Ctx) -> Any:
    """size(), dim(), shape...: reads no channel values."""
    return None


def opaque(ctx: Ctx) -> Any:
    return ctx.opaque()


def softmax(ctx: Ctx) -> Any:
    x = ctx.tensor()
    dim = ctx.arg(1, "dim")
    if x is None or not x.tracked:
        return untracked(ctx.shape)
    if not isinstance(dim, int) or norm_dim(dim, x.ndim) in x.tdims:
        ctx.flow.block(x.ids, f"'{ctx.node.name}' normalises across tracked channels")
        return untracked(ctx.shape)
    return ctx.flow.passthrough_new(x, ctx.shape)


def layer_norm(
    ctx: Ctx,
    x: TInfo | None,
    normalized: tuple[int, ...],
    weight: str | None,
    bias: str | None,
    where: str | None = None,
):
    """LayerNorm: affine params are members; the channels it normalises are kept (statistics change),
    or, with ``prune_normalized``, removable when their value is zero and the scale and shift are."""
    if x is None or not x.tracked:
        return untracked(ctx.shape)
    nd = x.ndim
    where = where or ctx.node.name
    norm_dims = list(range(nd - len(normalized), nd))
    hit = [d for d in x.tdims if d in norm_dims]
    out = ctx.flow.passthrough_new(x, ctx.shape)
    if not hit:
        return out
    if len(x.tdims) != 1 or len(normalized) != 1:
        dims = "several dims" if len(normalized) != 1 else "channels tracked along several dims"
        ctx.flow.unsliceable_norm(
            out.ids, where, f"LayerNorm normalises over {dims} (normalized_shape {tuple(normalized)}); "
            "only a norm over the channel dim alone can be sliced",
        )  # fmt: skip
        return out
    flow = ctx.flow
    out_ids = out.ids.reshape(-1)
    for name in (weight, bias):
        if name:
            flow.record(name, 0, "out", out_ids, where if where in flow.module_kinds else None)
    flow.normalize(
        out_ids,
        f"LayerNorm '{where}' normalises over these channels: removing one changes the mean and "
        "variance of the others",
    )
    if flow.prune_normalized:
        flow.rules.append(AffineNormRule(out_ids, weight, bias))
        flow.reader(None, 0, x.ids.reshape(-1))  # the statistics read the input: it must be zero
    return out


def f_layer_norm(ctx: Ctx) -> Any:
    x = ctx.tensor()
    shape_arg = ctx.arg(1, "normalized_shape")
    normalized = tuple(shape_arg) if isinstance(shape_arg, (tuple, list)) else (shape_arg,)
    weight = _param_name(ctx, ctx.arg(2, "weight"))
    bias = _param_name(ctx, ctx.arg(3, "bias"))
    owner = (weight or bias or "").rpartition(".")[0]
    module = _module_or_none(ctx.root, owner) if (weight or bias) else None
    if isinstance(module, nn.LayerNorm):  # LayerNorm2d-style: permute, F.layer_norm, permute back
        ctx.flow.module_kinds[owner] = "layernorm"
    return layer_norm(ctx, x, normalized, weight, bias, owner if module is not None else None)


def _module_or_none(root: nn.Module, name: str) -> nn.Module | None:
    try:
        return root.get_submodule(name)
    except AttributeError:
        return None


def _enclosing_norm(ctx: Ctx) -> str | None:
    """The innermost module around this node whose class name says it is a norm (a custom one)."""
    stack = ctx.node.meta.get("nn_module_stack") or {}
    for key, value in reversed(list(stack.items())):
        cls = value[1] if isinstance(value, tuple) and len(value) > 1 else None
        if isinstance(cls, type) and "norm" in cls.__name__.lower():
            return value[0] if isinstance(value[0], str) else str(key)
    return None


def _param_name(ctx: Ctx, arg: Any) -> str | None:
    v = ctx.value(arg)
    return v.param if isinstance(v, TInfo) else None


def pad(ctx: Ctx) -> Any:
    x = ctx.tensor()
    pads = ctx.arg(1, "pad")
    value = ctx.arg(3, "value", 0.0)
    if x is None or not x.tracked:
        return untracked(ctx.shape)
    if not isinstance(pads, (tuple, list)):
        return ctx.opaque()
    mode = ctx.arg(2, "mode", "constant")
    padded = {x.ndim - 1 - k // 2 for k, p in enumerate(pads) if p}
    hit = padded & set(x.tdims)
    if not hit:
        return TInfo(ctx.shape, x.tdims, x.ids)
    if (
        mode != "constant"
        or value not in (0, 0.0, None)
        or len(x.tdims) != 1
        or any(not isinstance(p, int) for p in pads)
    ):
        return ctx.opaque()
    # zero channels added on both sides (a widening identity shortcut): the fixed padding is kept,
    # the original channels keep their ids at an offset
    dim = x.tdims[0]
    k = 2 * (x.ndim - 1 - dim)
    lo, hi = pads[k], pads[k + 1]
    if lo < 0 or hi < 0:
        return ctx.opaque()
    flow = ctx.flow
    before, after = flow.fresh((lo,)), flow.fresh((hi,))
    reason = f"'{ctx.node.name}' pads channels with a fixed number of zeros"
    flow.block(before, reason)
    flow.block(after, reason)
    ids = np.concatenate([before, x.ids.reshape(-1), after])
    compact = tuple(ctx.shape[d] if d == dim else 1 for d in range(len(ctx.shape)))
    return TInfo(ctx.shape, (dim,), ids.reshape(compact))


def roll(ctx: Ctx) -> Any:
    x = ctx.tensor()
    dims = _dims_arg(ctx.arg(2, "dims"))
    if x is None or not x.tracked:
        return untracked(ctx.shape)
    if dims is None or {norm_dim(d, x.ndim) for d in dims} & set(x.tdims):
        return ctx.opaque()
    return TInfo(ctx.shape, x.tdims, x.ids)


# ---------------------------------------------------------------------------- modules
def module_conv(ctx: Ctx, name: str, m: nn.Module) -> Any:
    if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        return ctx.opaque(f"transposed convolution '{name}' is not modelled; its channels are kept")
    flow = ctx.flow
    x = ctx.tensor()
    weight, bias = f"{name}.weight", (f"{name}.bias" if m.bias is not None else None)
    if x is not None and x.tracked and x.tdims != (1,):
        flow.block(x.ids, f"convolution '{name}' mixes positions of a tracked dim")
        x = None
    in_ids = x.along(1) if x is not None and x.tracked else None
    cin, cout, g = m.in_channels, m.out_channels, m.groups
    compact = (1, cout) + (1,) * (len(ctx.shape) - 2)
    if g == 1:
        flow.module_kinds[name] = "conv"
        if in_ids is not None:
            flow.reader(weight, 1, in_ids)
            flow.record(weight, 1, "in", in_ids, name)
        out = flow.fresh((cout,))
        flow.record(weight, 0, "out", out, name)
        if bias:
            flow.record(bias, 0, "out", out, name)
        flow.rules.append(ProducerRule(out, weight, bias))
        return TInfo(ctx.shape, (1,), out.reshape(compact))
    if g == cin and cout % cin == 0:
        flow.module_kinds[name] = "depthwise"
        mult = cout // cin
        out = flow.fresh((cout,))
        flow.record(weight, 0, "out", out, name)
        if bias:
            flow.record(bias, 0, "out", out, name)
        if in_ids is None:
            flow.block(out, f"depthwise convolution '{name}' reads channels thinning cannot follow")
            flow.rules.append(ProducerRule(out, weight, bias))
        else:
            per_out = np.repeat(in_ids, mult)
            flow.union(per_out, out)
            flow.rules.append(DepthwiseRule(per_out, out, weight, bias))
        return TInfo(ctx.shape, (1,), out.reshape(compact))
    # grouped: the j-th channel of every group is tied, so all groups keep equal sizes
    flow.module_kinds[name] = "grouped"
    if in_ids is not None:
        table = in_ids.reshape(g, cin // g)
        for row in table[1:]:
            flow.union(table[0], row)
        flow.reader(weight, 1, table.T)
        flow.record(weight, 1, "in", table[0], name)
    out = flow.fresh((g, cout // g))
    for row in out[1:]:
        flow.union(out[0], row)
    out = out.reshape(-1)
    flow.record(weight, 0, "out", out, name)
    if bias:
        flow.record(bias, 0, "out", out, name)
    flow.rules.append(ProducerRule(out, weight, bias))
    return TInfo(ctx.shape, (1,), out.reshape(compact))


def module_linear(ctx: Ctx, name: str, m: nn.Module) -> Any:
    flow = ctx.flow
    x = ctx.tensor()
    weight, bias = f"{name}.weight", (f"{name}.bias" if m.bias is not None else None)
    flow.module_kinds[name] = "linear"
    if x is not None and x.tracked:
        last = x.ndim - 1
        other = [d for d in x.tdims if d != last]
        if other:
            flow.block(
                x.ids, f"linear '{name}' is applied to a tensor with tracked channels off its last dim"
            )
        elif x.tdims == (last,):
            ids = x.ids.reshape(-1)
            flow.reader(weight, 1, ids)
            flow.record(weight, 1, "in", ids, name)
    out = flow.fresh((m.out_features,))
    flow.record(weight, 0, "out", out, name)
    if bias:
        flow.record(bias, 0, "out", out, name)
    flow.rules.append(ProducerRule(out, weight, bias))
    nd = len(ctx.shape)
    return TInfo(ctx.shape, (nd - 1,), out.reshape((1,) * (nd - 1) + (m.out_features,)))


def module_batchnorm(ctx: Ctx, name: str, m: nn.Module) -> Any:
    names = {
        attr: f"{name}.{attr}"
        for attr in ("weight", "bias", "running_mean", "running_var")
        if getattr(m, attr, None) is not None
    }
    return _batch_norm(ctx, ctx.tensor(), names, name, name)


def f_batch_norm(ctx: Ctx) -> Any:
    """``F.batch_norm`` called by a module's own forward (timm's ``BatchNormAct2d``, which is a
    ``BatchNorm2d`` followed by an activation): the same per-channel affine map as the module."""
    names = {
        attr: name
        for index, attr in enumerate(("running_mean", "running_var", "weight", "bias"), start=1)
        if (name := _param_name(ctx, ctx.arg(index, attr))) is not None
    }
    owner = next(iter(names.values()), "").rpartition(".")[0]
    module = _module_or_none(ctx.root, owner) if names else None
    return _batch_norm(ctx, ctx.tensor(), names, ctx.node.name, owner if module is not None else None)


def _batch_norm(ctx: Ctx, x: TInfo | None, names: dict[str, str], where: str, owner: str | None) -> Any:
    """Channel ``c`` in, channel ``c`` out; ``names`` are the per-channel tensors (weight, bias,
    running statistics), ``owner`` the module whose ``num_features`` follows them."""
    flow = ctx.flow
    if x is None or not x.tracked:
        return untracked(ctx.shape)
    if x.tdims != (1,):
        flow.block(x.ids, f"batch norm '{where}' sees tracked channels off dim 1")
        return untracked(ctx.shape)
    if owner is not None:
        flow.module_kinds[owner] = "batchnorm"
    in_ids = x.ids.reshape(-1)
    out = flow.fresh((len(in_ids),))
    flow.union(in_ids, out)
    for tensor in names.values():
        flow.record(tensor, 0, "out", out, owner)
    flow.rules.append(
        NormRule(in_ids, out, names.get("weight"), names.get("bias"), names.get("running_mean"))
    )
    return TInfo(ctx.shape, (1,), out.reshape(x.ids.shape))


def module_layernorm(ctx: Ctx, name: str, m: nn.Module) -> Any:
    ctx.flow.module_kinds[name] = "layernorm"
    weight = f"{name}.weight" if getattr(m, "weight", None) is not None else None
    bias = f"{name}.bias" if getattr(m, "bias", None) is not None else None
    return layer_norm(ctx, ctx.tensor(), tuple(m.normalized_shape), weight, bias, name)


def module_groupnorm(ctx: Ctx, name: str, m: nn.Module) -> Any:
    """GroupNorm over dim 1: kept, or with ``prune_normalized`` removable like LayerNorm's channels,
    the j-th channel of every group tied so that all groups keep equal sizes."""
    x = ctx.tensor()
    if x is None or not x.tracked:
        return untracked(ctx.shape)
    flow = ctx.flow
    out = flow.passthrough_new(x, ctx.shape)
    if x.tdims != (1,):
        flow.unsliceable_norm(out.ids, name, "GroupNorm sees tracked channels off dim 1")
        return out
    flow.module_kinds[name] = "groupnorm"
    out_ids = out.ids.reshape(-1)
    names = {a: f"{name}.{a}" for a in ("weight", "bias") if getattr(m, a, None) is not None}
    for tensor in names.values():
        flow.record(tensor, 0, "out", out_ids, name)
    flow.normalize(out_ids, f"GroupNorm '{name}' normalises across these channels")
    if flow.prune_normalized:
        table = out_ids.reshape(m.num_groups, -1)
        for row in table[1:]:
            flow.union(table[0], row)
        flow.rules.append(AffineNormRule(out_ids, names.get("weight"), names.get("bias")))
        flow.reader(None, 0, x.ids.reshape(-1))
    return out


def _packed_attention(
    flow: Flow,
    in_ids: np.ndarray,
    num_heads: int,
    qkv: tuple[str, str | None, str],
    proj: tuple[str, str | None, str],
) -> tuple[np.ndarray, np.ndarray]:
    """Channel ids through attention with one packed q/k/v weight ``(3E, E)`` and an output
    projection ``(E, E)``; returns the output ids and the ``(heads, head_dim)`` table of input ids.

    Every channel of a head is tied into one unit (see :func:`module_attention`); with
    ``flow.narrow_heads`` position ``j`` of every head is one unit instead (each head loses the same
    positions, the number of heads stays) and the query rows are rescaled when thinned
    (:class:`~prunecli.graph.model.QueryScale`). ``qkv`` and ``proj`` are (weight, bias, owning
    module) names.
    """
    e = len(in_ids)
    heads = in_ids.reshape(num_heads, e // num_heads)
    weight, bias, owner = qkv
    if flow.narrow_heads:
        flow.union(heads[:1, :], heads)  # position j of every head goes together
        flow.query_scales.append(QueryScale(tuple(t for t in (weight, bias) if t), heads[0].copy()))
    else:
        flow.union(heads[:, :1], heads)  # a head goes whole
    flow.reader(weight, 1, in_ids)
    flow.record(weight, 1, "in", in_ids, owner)
    q, k, v = flow.fresh((e,)), flow.fresh((e,)), flow.fresh((e,))
    for part, start in ((q, 0), (k, e), (v, 2 * e)):
        flow.union(part, in_ids)
        flow.rules.append(ProducerRule(part, weight, bias, start))
    packed = np.concatenate([q, k, v])
    flow.record(weight, 0, "out", packed, owner)
    if bias:
        flow.record(bias, 0, "out", packed, owner)
    scores = flow.fresh((e,))  # q_c * k_c: gone when either is zero
    flow.union(scores, in_ids)
    flow.rules.append(CombineRule([q, k], scores, "any"))
    flow.reader(None, 0, scores)
    proj_weight, proj_bias, proj_owner = proj
    flow.reader(proj_weight, 1, v)
    flow.record(proj_weight, 1, "in", v, proj_owner)
    out = flow.fresh((e,))
    flow.union(out, in_ids)
    flow.record(proj_weight, 0, "out", out, proj_owner)
    if proj_bias:
        flow.record(proj_bias, 0, "out", out, proj_owner)
    flow.rules.append(ProducerRule(out, proj_weight, proj_bias))
    return out, heads


def shifted_window_attention(ctx: Ctx) -> Any:
    """torchvision's Swin attention (one wrapped function): packed qkv and proj ``Linear`` weights, a
    per-head relative-position bias table; heads go whole with their embedding channels, as in
    :func:`module_attention`."""
    flow = ctx.flow
    x = ctx.tensor(0, "input")
    qkv_w, proj_w = _param_name(ctx, ctx.arg(1, "qkv_weight")), _param_name(ctx, ctx.arg(2, "proj_weight"))
    heads = ctx.arg(5, "num_heads")
    if (
        x is None
        or not x.tracked
        or x.tdims != (x.ndim - 1,)
        or not (qkv_w and proj_w)
        or not isinstance(heads, int)
    ):
        return ctx.opaque()
    qkv_b, proj_b = _param_name(ctx, ctx.arg(9, "qkv_bias")), _param_name(ctx, ctx.arg(10, "proj_bias"))
    if ctx.arg(11, "logit_scale") is not None:
        return ctx.opaque(
            f"'{ctx.node.name}': Swin V2 attention (logit_scale) is not modelled; its channels are kept"
        )
    qkv_module, proj_module = qkv_w.rpartition(".")[0], proj_w.rpartition(".")[0]
    attn = qkv_module.rpartition(".")[0]
    for module in (qkv_module, proj_module):
        flow.module_kinds[module] = "linear"
    out, table = _packed_attention(
        flow, x.ids.reshape(-1), heads, (qkv_w, qkv_b, qkv_module), (proj_w, proj_b, proj_module)
    )
    owner = _module_or_none(ctx.root, attn)
    bias_table = getattr(owner, "relative_position_bias_table", None)
    whole = not flow.narrow_heads  # narrowed heads all stay: the table and num_heads are unchanged
    if whole and isinstance(bias_table, torch.Tensor) and bias_table.dim() == 2 and bias_table.shape[1] == heads:
        flow.record(f"{attn}.relative_position_bias_table", 1, "out", table[:, 0], attn)
    if whole and owner is not None and getattr(owner, "num_heads", None) == heads:
        flow.size_attribute(attn, "num_heads", table[:, 0])
    nd = len(ctx.shape)
    return TInfo(ctx.shape, (nd - 1,), out.reshape((1,) * (nd - 1) + (len(out),)))


def patch_merging_pad(ctx: Ctx) -> Any:
    """torchvision's Swin patch merging: pad H and W, then concatenate the four 2x2 neighbours'
    channels (``[x0, x1, x2, x3]`` along the last dim): every channel appears four times."""
    x = ctx.tensor()
    if x is None or not x.tracked:
        return untracked(ctx.shape)
    if x.tdims != (x.ndim - 1,):
        return ctx.opaque()
    ids = np.tile(x.ids.reshape(-1), 4)
    nd = len(ctx.shape)
    return TInfo(ctx.shape, (nd - 1,), ids.reshape((1,) * (nd - 1) + (len(ids),)))


def module_attention(ctx: Ctx, name: str, m: nn.Module) -> Any:
    """Self-attention in ``nn.MultiheadAttention`` (packed q/k/v): heads and the embedding together.

    torch's module computes ``head_dim = embed_dim // num_heads`` from its input's width, so the
    embedding it reads, its q/k/v width and its output must keep one size. Every channel of a head
    (a contiguous block of ``head_dim`` in the input, in each of q, k, v and in the output) is
    therefore tied into one unit: removing a head removes ``head_dim`` embedding channels, q/k/v rows
    and ``out_proj`` columns and rows. It is exact when the head's value rows are zero (or the
    out_proj columns reading them) and its q or k rows are: the head then contributes nothing.
    """
    flow = ctx.flow
    args = list(ctx.node.args[:3]) + [ctx.node.kwargs.get(k) for k in ("query", "key", "value")]
    nodes = [a for a in args if a is not None][:3]
    x = ctx.tensor(0, "query")
    simple = (
        len(nodes) == 3
        and nodes[0] is nodes[1] is nodes[2]
        and m._qkv_same_embed_dim
        and m.in_proj_weight is not None
        and m.bias_k is None
        and not m.add_zero_attn
    )
    if not simple or x is None or not isinstance(ctx.shape, tuple):
        return ctx.opaque(
            f"attention '{name}' is not plain self-attention with packed q/k/v weights; its channels are kept"
        )
    last = x.ndim - 1
    out_shape = ctx.shape[0]
    if not x.tracked or x.tdims != (last,):
        if x.tracked:
            flow.block(x.ids, f"attention '{name}' reads tracked channels off its last dim")
        in_ids = flow.fresh((m.embed_dim,))
        flow.block(in_ids, f"attention '{name}' reads channels thinning cannot follow")
    else:
        in_ids = x.ids.reshape(-1)
    flow.module_kinds[name] = "attention"
    flow.module_kinds[f"{name}.out_proj"] = "linear"
    proj = f"{name}.out_proj"
    bias = f"{name}.in_proj_bias" if m.in_proj_bias is not None else None
    out, heads = _packed_attention(
        flow,
        in_ids,
        m.num_heads,
        (f"{name}.in_proj_weight", bias, name),
        (f"{proj}.weight", f"{proj}.bias" if m.out_proj.bias is not None else None, proj),
    )
    e = m.embed_dim
    if flow.narrow_heads:
        flow.size_attribute(name, "head_dim", heads[0])  # the number of heads stays
    else:
        flow.size_attribute(name, "num_heads", heads[:, 0])
        parent = name.rpartition(".")[0]
        owner = _module_or_none(ctx.root, parent)
        if owner is not None and getattr(owner, "num_heads", None) == m.num_heads:
            flow.size_attribute(parent, "num_heads", heads[:, 0])  # torchvision's EncoderBlock mirrors it
    nd = len(out_shape)
    result = TInfo(out_shape, (nd - 1,), out.reshape((1,) * (nd - 1) + (e,)))
    return (result,) + tuple(untracked(s) for s in ctx.shape[1:])


def module_softmax(ctx: Ctx, name: str, m: nn.Module) -> Any:
    x = ctx.tensor()
    if x is None or not x.tracked:
        return untracked(ctx.shape)
    dim = m.dim if m.dim is not None else x.ndim - 1
    if norm_dim(dim, x.ndim) in x.tdims:
        ctx.flow.block(x.ids, f"softmax '{name}' normalises across tracked channels")
        return untracked(ctx.shape)
    return ctx.flow.passthrough_new(x, ctx.shape)


def module_flatten(ctx: Ctx, name: str, m: nn.Module) -> Any:
    return flatten(ctx)


def _wrap(fn: Callable[[Ctx], Any]) -> Callable[[Ctx, str, nn.Module], Any]:
    return lambda ctx, name, m: fn(ctx)


SAME_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.LeakyReLU,
    nn.ELU,
    nn.Tanh,
    nn.Mish,
    nn.Hardtanh,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.Hardshrink,
    nn.Softshrink,
    nn.Tanhshrink,
    nn.SELU,
    nn.CELU,
)
NEW_MODULES = (nn.Sigmoid, nn.Hardsigmoid, nn.Softplus, nn.LogSigmoid, nn.PReLU)
SPATIAL_MODULES = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.Upsample,
    nn.UpsamplingNearest2d,
    nn.UpsamplingBilinear2d,
    nn.ZeroPad2d,
)

MODULE_HANDLERS: dict[type, Callable[[Ctx, str, nn.Module], Any]] = {
    nn.Conv1d: module_conv,
    nn.Conv2d: module_conv,
    nn.Conv3d: module_conv,
    nn.Linear: module_linear,
    nn.BatchNorm1d: module_batchnorm,
    nn.BatchNorm2d: module_batchnorm,
    nn.BatchNorm3d: module_batchnorm,
    nn.LayerNorm: module_layernorm,
    nn.MultiheadAttention: module_attention,
    nn.GroupNorm: module_groupnorm,
    nn.Softmax: module_softmax,
    nn.Flatten: module_flatten,
    **{t: _wrap(same_ids) for t in SAME_MODULES},
    **{t: _wrap(new_ids) for t in NEW_MODULES},
    **{t: _wrap(spatial) for t in SPATIAL_MODULES},
}
# PReLU has a per-channel weight: modelled as opaque unless single-parameter (kept simple)
MODULE_HANDLERS[nn.PReLU] = lambda ctx, name, m: (
    _wrap(new_ids)(ctx, name, m) if m.num_parameters == 1 else ctx.opaque()
)


def module_handler(m: nn.Module) -> Callable[[Ctx, str, nn.Module], Any] | None:
    for cls in type(m).__mro__:
        if cls in MODULE_HANDLERS:
            return MODULE_HANDLERS[cls]
    return None


# ---------------------------------------------------------------------------- functions
SAME_FUNCTIONS = [
    F.relu,
    torch.relu,
    F.relu6,
    F.gelu,
    F.silu,
    F.hardswish,
    F.leaky_relu,
    F.elu,
    torch.tanh,
    F.tanh,
    F.dropout,
    F.dropout1d,
    F.dropout2d,
    F.dropout3d,
    F.alpha_dropout,
    F.hardtanh,
    F.mish,
    operator.neg,
    torch.neg,
    F.relu_,
    torch.relu_,
    F.selu,
    F.celu,
    torch.clone,
    torch.Tensor.contiguous,
]
NEW_FUNCTIONS = [torch.sigmoid, F.sigmoid, F.hardsigmoid, F.softplus, torch.exp, F.logsigmoid]
SPATIAL_FUNCTIONS = [
    F.max_pool1d,
    F.max_pool2d,
    F.max_pool3d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
    F.adaptive_max_pool3d,
    F.interpolate,
    F.upsample,
    torch.max_pool2d,
    torch.avg_pool1d,
    torch.adaptive_avg_pool1d,
]

FUNCTION_HANDLERS: dict[Any, Callable[[Ctx], Any]] = {
    **{f: same_ids for f in SAME_FUNCTIONS},
    **{f: new_ids for f in NEW_FUNCTIONS},
    **{f: spatial for f in SPATIAL_FUNCTIONS},
    operator.add: elementwise("all"),
    operator.iadd: elementwise("all"),
    operator.sub: elementwise("all"),
    operator.isub: elementwise("all"),
    torch.add: elementwise("all"),
    torch.sub: elementwise("all"),
    operator.mul: elementwise("any"),
    operator.imul: elementwise("any"),
    torch.mul: elementwise("any"),
    operator.truediv: elementwise("first"),
    operator.itruediv: elementwise("first"),
    torch.div: elementwise("first"),
    torch.flatten: flatten,
    torch.reshape: view,
    torch.permute: permute,
    torch.transpose: transpose,
    torch.cat: cat,
    torch.concat: cat,
    torch.split: lambda ctx: split(ctx, chunks=False),
    torch.chunk: lambda ctx: split(ctx, chunks=True),
    operator.getitem: getitem,
    torch.mean: mean_like,
    torch.sum: mean_like,
    torch.amax: mean_like,
    F.softmax: softmax,
    torch.softmax: softmax,
    F.layer_norm: f_layer_norm,
    F.batch_norm: f_batch_norm,
    F.pad: pad,
    torch.roll: roll,
    torch.squeeze: squeeze_like,
    torch.unsqueeze: squeeze_like,
    getattr: nontensor,
    torch._assert: nontensor,
    torch.Tensor.size: nontensor,
}

METHOD_HANDLERS: dict[str, Callable[[Ctx], Any]] = {
    "relu": same_ids,
    "relu_": same_ids,
    "contiguous": same_ids,
    "clone": same_ids,
    "detach": same_ids,
    "float": same_ids,
    "to": same_ids,
    "type_as": same_ids,
    "sigmoid": new_ids,
    "sigmoid_": new_ids,
    "tanh": same_ids,
    "add": elementwise("all"),
    "add_": elementwise("all"),
    "sub": elementwise("all"),
    "mul": elementwise("any"),
    "mul_": elementwise("any"),
    "div": elementwise("first"),
    "flatten": flatten,
    "view": view,
    "reshape": view,
    "permute": permute,
    "transpose": transpose,
    "expand": expand,
    "expand_as": expand,
    "split": lambda ctx: split(ctx, chunks=False),
    "chunk": lambda ctx: split(ctx, chunks=True),
    "mean": mean_like,
    "sum": mean_like,
    "amax": mean_like,
    "softmax": softmax,
    "squeeze": squeeze_like,
    "unsqueeze": squeeze_like,
    "size": nontensor,
    "dim": nontensor,
    "numel": nontensor,
}


def run_node(ctx: Ctx) -> Any:
    """Dispatch one fx node to its handler."""
    node = ctx.node
    if node.op == "call_module":
        m = ctx.root.get_submodule(node.target)
        handler = module_handler(m)
        if handler is None:
            return ctx.opaque(
                f"module '{node.target}' ({type(m).__name__}) is not modelled; its channels are kept"
            )
        return handler(ctx, node.target, m)
    if node.op == "call_function":
        handler = FUNCTION_HANDLERS.get(node.target) or _optional_handler(node.target)
        if handler is None and not _has_tensor_args(ctx):
            return untracked(ctx.shape) if _is_tensor_shape(ctx.shape) else None
        return (handler or opaque)(ctx)
    if node.op == "call_method":
        handler = METHOD_HANDLERS.get(node.target)
        return (handler or opaque)(ctx)
    return untracked(ctx.shape)


def _has_tensor_args(ctx: Ctx) -> bool:
    values = [ctx.value(a) for a in list(ctx.node.args) + list(ctx.node.kwargs.values())]
    return any(True for _ in iter_infos(values))


def _is_tensor_shape(shape: Any) -> bool:
    return isinstance(shape, tuple) and all(isinstance(s, int) for s in shape)


def _optional_handler(target: Any) -> Callable[[Ctx], Any] | None:
    """Handlers for functions of optional libraries that fx keeps as single calls (``torch.fx.wrap``).

    Looked up only in modules already imported: a model calling such a function has imported its
    library, and a model that does not never pays for the import.
    """
    ops = sys.modules.get("torchvision.ops")
    if ops is not None and target is getattr(ops, "stochastic_depth", None):
        return same_ids  # per-sample scaling (identity in eval mode): zero-preserving, channel-wise
    swin = sys.modules.get("torchvision.models.swin_transformer")
    if swin is not None and target is getattr(swin, "shifted_window_attention", None):
        return shifted_window_attention
    if swin is not None and target is getattr(swin, "_patch_merging_pad", None):
        return patch_merging_pad
    return None
