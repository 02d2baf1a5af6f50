"""How channel ids move when a tensor's layout changes (view/reshape/flatten, permute, indexing)."""

from __future__ import annotations

import numpy as np

from prunecli.graph.flow import Flow, TInfo


def reshape_runs(src: tuple[int, ...], dst: tuple[int, ...]) -> list[tuple[list[int], list[int]]] | None:
    """Pair contiguous runs of ``src`` dims with runs of ``dst`` dims of equal element count."""
    runs: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(src) or j < len(dst):
        run_i: list[int] = []
        run_j: list[int] = []
        pi = pj = 1
        if i < len(src):
            pi *= src[i]
            run_i.append(i)
            i += 1
        if j < len(dst):
            pj *= dst[j]
            run_j.append(j)
            j += 1
        while pi != pj:
            if pi < pj and i < len(src):
                pi *= src[i]
                run_i.append(i)
                i += 1
            elif pj < pi and j < len(dst):
                pj *= dst[j]
                run_j.append(j)
                j += 1
            else:
                return None
        runs.append((run_i, run_j))
    return runs


def reshape(
    flow: Flow,
    x: TInfo,
    out_shape: tuple[int, ...],
    node_name: str,
    literal_dims: set[int] | None = None,
) -> TInfo:
    """Carry ids through a contiguous reshape; a channel dim split in several dims is blocked.

    ``literal_dims`` are output dims whose size was written as a constant in the model's code:
    thinning would leave that constant stale, so channels reaching them are blocked.
    """
    out_shape = tuple(out_shape)
    if not x.tracked:
        return TInfo(out_shape)
    runs = reshape_runs(tuple(x.shape), out_shape)
    if runs is None:
        flow.block(x.ids, f"reshape at '{node_name}' could not be followed")
        return TInfo(out_shape)
    cur = x.ids
    start = 0  # first not-yet-converted axis of ``cur``
    for run_in, run_out in runs:
        n_in = len(run_in)
        head, tail = cur.shape[:start], cur.shape[start + n_in :]
        tracked_in = [d for d in run_in if d in x.tdims]
        if not tracked_in:
            cur = cur.reshape(head + (1,) * len(run_out) + tail)
            start += len(run_out)
            continue
        full = tuple(x.shape[d] for d in run_in)
        new = tuple(out_shape[d] for d in run_out)
        cur = np.broadcast_to(cur, head + full + tail).reshape(head + new + tail)
        varying = 0
        for k in range(len(run_out)):
            axis = start + k
            first = np.take(cur, [0], axis=axis)
            if cur.shape[axis] > 1 and not (np.broadcast_to(first, cur.shape) == cur).all():
                varying += 1
            else:
                cur = first
        region = cur
        if varying > len(tracked_in):
            flow.block(
                region,
                f"'{node_name}' splits a channel dim into several dims (attention heads, channel "
                "shuffle); the split sizes are fixed in the model, so these channels are kept",
            )
        if literal_dims and any(d in literal_dims for d in run_out):
            flow.block(
                region,
                f"'{node_name}' reshapes channels to a size written as a constant in the model code; "
                "use x.flatten(1) or x.view(x.size(0), -1) so thinning can change it",
            )
        start += len(run_out)
    cur = np.ascontiguousarray(cur)
    tdims = tuple(d for d in range(len(out_shape)) if cur.shape[d] > 1)
    if not tdims:
        return TInfo(out_shape)
    return TInfo(out_shape, tdims, cur)


def permute(x: TInfo, perm: list[int], out_shape: tuple[int, ...]) -> TInfo:
    if not x.tracked:
        pdims = tuple(x.pdims[p] for p in perm) if x.pdims is not None else None
        return TInfo(tuple(out_shape), param=x.param, pdims=pdims)
    ids = np.ascontiguousarray(np.transpose(x.ids, perm))
    tdims = tuple(sorted(perm.index(d) for d in x.tdims))
    return TInfo(tuple(out_shape), tdims, ids)
