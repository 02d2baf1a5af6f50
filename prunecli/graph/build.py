"""build_dependency_graph: trace, walk every node, and turn channel components into groups."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import nn

from prunecli.errors import GraphError
from prunecli.graph.flow import Flow, TInfo
from prunecli.graph.model import ChannelFlow, ChannelGroup, DependencyGraph, Member
from prunecli.graph.ops import Ctx, run_node
from prunecli.graph.trace import Traced, record_shapes, trace

MODEL_INPUT = "model input: its channel count is fixed by the data"
MODEL_OUTPUT = "model output: its size is what the model predicts"


def build_dependency_graph(
    model: nn.Module, example_input: Any, *, prune_normalized: bool = False, narrow_heads: bool = False
) -> DependencyGraph:
    """Channel groups of ``model`` from its torch.fx graph, run once on ``example_input``.

    The model is traced in eval mode; when some parameters are only used in training mode
    (auxiliary classifiers) the training-mode graph is walked too, so thinning never breaks them.
    With ``prune_normalized`` channels normalised by LayerNorm/GroupNorm are prunable too (their
    groups carry ``normalized``: removing them changes the norm's statistics). With ``narrow_heads``
    attention (``nn.MultiheadAttention``, torchvision's Swin attention) keeps its number of heads and
    every head loses the same positions (its ``head_dim`` shrinks) instead of whole heads going.
    """
    inputs = _as_tuple(example_input)
    was_training = model.training
    flow = Flow(prune_normalized, narrow_heads)
    notes: list[str] = []
    try:
        model.eval()
        gm, leaf_notes = trace(model)
        notes += leaf_notes
        _walk(flow, gm, record_shapes(gm, inputs), inputs, model)
        unreached = _unreached_modules(model, gm)
        if unreached:
            model.train()
            try:
                gm_train, _ = trace(model)
            finally:
                model.eval()
            rng = torch.random.get_rng_state()
            try:
                shapes = record_shapes(gm_train, inputs)
            except GraphError as exc:
                raise GraphError(
                    f"modules used only in training mode ({', '.join(unreached[:4])}) cannot run on "
                    f"an input of shape {tuple(inputs[0].shape)}: {exc.message}",
                    hint="use the size the model is trained at (--input-shape for thin, deps and export; "
                    "for run, the data set's image size, e.g. --set dataset_options.image_size=299 with "
                    "--dataset fake), or disable the auxiliary outputs (e.g. aux_logits=False)",
                ) from exc
            finally:
                torch.random.set_rng_state(rng)
            _walk(flow, gm_train, shapes, inputs, model)
            notes.append(f"training-mode-only modules analysed too: {', '.join(unreached)}")
    finally:
        model.train(was_training)
    graph = _finish(flow, notes)
    graph.prune_normalized = prune_normalized
    graph.narrow_heads = narrow_heads
    if flow.unsliceable_norms:
        _refuse_unsliceable(flow.unsliceable_norms)
    return graph


def _refuse_unsliceable(norms: list[tuple[str, str]]) -> None:
    """Pruning normalised channels was asked for, but some norm cannot be sliced: say which, and stop."""
    where, reason = norms[0]
    others = sorted({w for w, _ in norms[1:] if w != where})
    more = f" (also: {', '.join(others[:4])}{', ...' if len(others) > 4 else ''})" if others else ""
    raise GraphError(
        f"cannot prune the channels normalised by '{where}': {reason}{more}",
        hint="replace the module with torch.nn.LayerNorm / GroupNorm over the channel dim, or prune "
        "without prune_normalized (the schedule argument, --prune-normalized) so that these channels are kept",
    )


def _as_tuple(example_input: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(example_input, torch.Tensor):
        return (example_input,)
    if isinstance(example_input, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in example_input):
        return tuple(example_input)
    raise GraphError(
        f"example input must be a tensor or a tuple of tensors, not {type(example_input).__name__}",
        hint="pass a batch such as torch.randn(1, 3, 32, 32)",
    )


def _walk(flow: Flow, gm: Traced, shapes: dict[str, Any], inputs, model: nn.Module) -> None:
    env: dict[str, Any] = {}
    tensors = dict(model.named_parameters())
    tensors.update(dict(model.named_buffers()))
    placeholder = 0
    for node in gm.graph.nodes:
        shape = shapes.get(node.name)
        if node.op == "placeholder":
            env[node.name] = _input_info(flow, shape)
            placeholder += 1
        elif node.op == "get_attr":
            t = tensors.get(node.target)
            if t is not None:
                env[node.name] = TInfo(tuple(t.shape), param=node.target, pdims=tuple(range(t.dim())))
            else:
                env[node.name] = None
        elif node.op == "output":
            ctx = Ctx(flow, node, env, shape, gm.root)
            flow.block_info(ctx.value(node.args[0]), MODEL_OUTPUT)
        else:
            env[node.name] = run_node(Ctx(flow, node, env, shape, gm.root))
    del placeholder


def _input_info(flow: Flow, shape: Any) -> TInfo | None:
    if not isinstance(shape, tuple):
        return None
    if len(shape) not in (2, 4, 5):
        return TInfo(shape)  # (N, L, C) or (N, C, L)? unknown: untracked, so every use is blocked
    ids = flow.fresh((shape[1],))
    flow.block(ids, MODEL_INPUT)
    compact = (1, shape[1]) + (1,) * (len(shape) - 2)
    return TInfo(shape, (1,), ids.reshape(compact))


def _unreached_modules(model: nn.Module, gm: Traced) -> list[str]:
    used: set[str] = set()
    for node in gm.graph.nodes:
        if node.op == "call_module":
            used.add(node.target)
        elif node.op == "get_attr":
            used.add(node.target.rpartition(".")[0])
    used.discard("")
    out = []
    for name, m in model.named_modules():
        if not name or not any(p is not None for p in m._parameters.values()):
            continue
        # reached when the module or one of its ancestors is called (checked prefix by prefix)
        parts = name.split(".")
        if any(".".join(parts[:i]) in used for i in range(1, len(parts) + 1)):
            continue
        out.append(name)
    return out


def _finish(flow: Flow, notes: list[str]) -> DependencyGraph:
    n = max(flow.num_ids, 1)
    if flow.edges_a:
        a = np.concatenate(flow.edges_a)
        b = np.concatenate(flow.edges_b)
    else:
        a = b = np.zeros(0, dtype=np.int64)
    adjacency = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _, component = connected_components(adjacency, directed=False)
    component = component.astype(np.int64)
    n_comp = int(component.max()) + 1 if len(component) else 0

    blocked: dict[int, str] = {}
    for ids, reason in flow.blocked:
        for c in np.unique(component[ids]).tolist():
            blocked.setdefault(c, reason)

    normalized: dict[int, str] = {}
    for ids, reason in flow.normalized:
        for c in np.unique(component[ids]).tolist():
            normalized.setdefault(c, reason)

    records = list(flow.records.values())
    groups, group_of_component = _group(records, component, n_comp, blocked)
    for group in groups if normalized else ():
        if group.prunable:
            comps = np.flatnonzero(group_of_component == group.index)
            group.normalized = next((normalized[c] for c in comps.tolist() if c in normalized), None)
    channel_flow = ChannelFlow(
        num_ids=flow.num_ids,
        component=component,
        records=records,
        readers=flow.readers,
        zero_rules=flow.rules,
        blocked=blocked,
        group_of_component=group_of_component,
        modules=dict(flow.module_kinds),
        normalized=normalized,
        size_attributes=list(flow.size_attributes),
        unsliceable_norms=list(flow.unsliceable_norms),
        query_scales=list(flow.query_scales),
    )
    return DependencyGraph(groups=groups, flow=channel_flow, notes=notes)


def _group(records, component: np.ndarray, n_comp: int, blocked: dict[int, str]):
    """Components with the same member slices form one group, split where indices stop being affine."""
    group_of_component = np.full(n_comp, -1, dtype=np.int64)
    if not records:
        return [], group_of_component
    rec_ix = np.concatenate([np.full(len(r.ids), i, dtype=np.int64) for i, r in enumerate(records)])
    idx = np.concatenate([np.arange(len(r.ids), dtype=np.int64) for r in records])
    comp = np.concatenate([component[r.ids] for r in records])
    order = np.lexsort((idx, rec_ix, comp))
    rec_ix, idx, comp = rec_ix[order], idx[order], comp[order]
    m = len(idx)
    new_pair = np.ones(m, dtype=bool)
    new_pair[1:] = (comp[1:] != comp[:-1]) | (rec_ix[1:] != rec_ix[:-1])
    new_run = new_pair.copy()
    new_run[1:] |= idx[1:] != idx[:-1] + 1
    starts = np.flatnonzero(new_run)
    run_len = np.diff(np.append(starts, m))
    run_comp, run_rec, run_start = comp[starts], rec_ix[starts], idx[starts]
    # ordinal of the run within its (component, record) pair
    pair_id = np.cumsum(new_pair)[starts]
    first_of_pair = np.ones(len(starts), dtype=bool)
    first_of_pair[1:] = pair_id[1:] != pair_id[:-1]
    run_pos = np.arange(len(starts)) - np.maximum.accumulate(
        np.where(first_of_pair, np.arange(len(starts)), 0)
    )
    span = int(max(run_len.max(), run_pos.max())) + 1
    keys = (run_rec * span + run_pos) * span + run_len
    _, run_key = np.unique(keys, return_inverse=True)
    run_key = run_key.reshape(-1)
    rng = np.random.default_rng(12345)
    weights = rng.integers(1, 2**62, size=int(run_key.max()) + 1, dtype=np.int64)
    comp_hash = np.zeros(n_comp, dtype=np.int64)
    np.add.at(comp_hash, run_comp, weights[run_key])
    members_of = np.zeros(n_comp, dtype=bool)
    members_of[run_comp] = True
    _, comp_class = np.unique(comp_hash, return_inverse=True)
    run_class = comp_class[run_comp]
    order = np.lexsort((run_start, run_key, run_class))
    bounds = np.flatnonzero(np.diff(run_class[order])) + 1
    raw_groups: list[tuple[int, np.ndarray, list[tuple[int, int, int, int]]]] = []
    for seg in np.split(order, bounds):
        if len(seg) == 0:
            continue
        seg_keys = run_key[seg]
        uniq = np.unique(seg_keys)
        ncomp = len(seg) // len(uniq)
        rows = seg.reshape(len(uniq), ncomp)
        comps0 = run_comp[rows[0]]
        start_matrix = np.empty((len(uniq), ncomp), dtype=np.int64)
        for k, row in enumerate(rows):
            s = np.argsort(run_comp[row], kind="stable")
            sorted_comps = run_comp[row][s]
            pos = np.searchsorted(sorted_comps, comps0)
            start_matrix[k] = run_start[row][s][pos]
        lens = run_len[rows[:, 0]]
        recs = run_rec[rows[:, 0]]
        breaks = np.flatnonzero((np.diff(start_matrix, axis=1) != lens[:, None]).any(axis=0)) + 1
        lo = 0
        for hi in list(breaks) + [ncomp]:
            part = comps0[lo:hi]
            spec = [(int(recs[k]), int(start_matrix[k, lo]), int(lens[k]), k) for k in range(len(uniq))]
            raw_groups.append((min(s[0] for s in spec), part, spec))
            lo = hi
    raw_groups.sort(key=lambda g: (g[0], min(s[1] for s in g[2] if s[0] == g[0])))
    groups: list[ChannelGroup] = []
    for gi, (_, part, spec) in enumerate(raw_groups):
        members = []
        reason = None
        for rec_i, start, block, _ in sorted(spec, key=lambda s: (s[0], s[1])):
            r = records[rec_i]
            if start % block:
                reason = f"'{r.tensor}' holds these channels at an offset that is not a multiple of {block}"
            members.append(Member(r.tensor, r.dim, -(start // block), block, r.role))
        for c in part.tolist():
            if c in blocked:
                reason = reason or blocked[c]
                break
        group_of_component[part] = gi
        groups.append(ChannelGroup(gi, len(part), members, prunable=reason is None, reason=reason))
    del members_of
    return groups, group_of_component
