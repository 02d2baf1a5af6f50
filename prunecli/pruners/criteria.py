"""Mask criteria shared by the pruners, the regularizers and sensitivity analysis.

Every function is pure: it reads a tensor and returns a new mask (same shape and dtype as the
tensor) or a per-structure binary map. The numbers follow Distiller: element levels use
``k = int(level * numel)`` and keep ``|w| > k-th smallest``; structures are ranked by their
length-normalised Lp norm and ``floor(fraction * n)`` are removed, never all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch


def threshold_mask(tensor: torch.Tensor, threshold: float) -> torch.Tensor:
    """Keep elements whose magnitude is strictly above ``threshold``."""
    with torch.no_grad():
        return torch.gt(tensor.abs(), threshold).to(tensor.dtype)


def level_mask(tensor: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Zero the ``int(sparsity * numel)`` smallest-magnitude elements (ties below the cut go too)."""
    with torch.no_grad():
        k = int(sparsity * tensor.numel())
        if k <= 0:
            return torch.ones_like(tensor)
        bottomk = torch.topk(tensor.abs().reshape(-1), k, largest=False, sorted=True).values
        return threshold_mask(tensor, bottomk[-1].item())


def num_structs_to_prune(
    n: int, fraction: float, group_size: int = 1, rounding_fn: Callable = math.floor
) -> int:
    """How many of ``n`` structures a fraction removes; all of them only when asked for exactly 1.0."""
    count = int(rounding_fn(fraction * n))
    count = int(rounding_fn(count / group_size) * group_size)
    if count >= n and fraction != 1.0:
        count = n - group_size
    return max(count, 0)


def round_prune_count(n: int, k: int, round_to: int = 1) -> int:
    """The prune count after rounding the kept count ``n - k`` *up* to a multiple of ``round_to``.

    Torch-Pruning's ``round_to`` also makes kept counts multiples of N, but rounds them down (pruning
    more than asked); here the kept count never drops below the one requested, so the channels added
    back are the highest-ranked of those that would have gone. A layer narrower than the rounded
    count keeps every channel.
    """
    if round_to <= 1 or k <= 0:
        return k
    kept = -(-(n - k) // round_to) * round_to
    return n - min(kept, n)


def kept_count(n: int, fraction: float, round_to: int = 1) -> tuple[int, int]:
    """(requested, rounded) kept structures of ``n`` when a ranked pruner removes ``fraction``."""
    k = num_structs_to_prune(n, fraction)
    return n - k, n - round_prune_count(n, k, round_to)


def lowest_k_map(scores: torch.Tensor, k: int, dtype: torch.dtype) -> torch.Tensor:
    """1 everywhere except the exactly ``k`` lowest scores (ties broken by the lower index)."""
    order = torch.argsort(scores.detach().cpu(), stable=True)
    binary_map = torch.ones(scores.numel(), dtype=dtype)
    binary_map[order[:k]] = 0
    return binary_map.to(scores.device)


def _norm(view: torch.Tensor, p: int, dim: int) -> torch.Tensor:
    if p == 1:
        return view.abs().sum(dim=dim)
    return view.pow(2).sum(dim=dim).sqrt()


def slice_norms(tensor: torch.Tensor, dim: int, p: int = 1, length_normalized: bool = True) -> torch.Tensor:
    """The Lp norm of every slice ``tensor.select(dim, i)`` (divided by the slice size by default)."""
    with torch.no_grad():
        view = tensor.detach().movedim(dim, 0).reshape(tensor.size(dim), -1)
        norms = _norm(view, p, dim=1)
        return norms / view.size(1) if length_normalized else norms


#: group type -> (tensor ranks it applies to, dimension whose slices are the structures)
_SLICE_GROUPS: dict[str, tuple[tuple[int, ...], int]] = {
    "Filters": ((3, 4), 0),
    "3D": ((3, 4), 0),
    "Channels": ((2, 4), 1),
    "Rows": ((2, 4), 1),
    "Cols": ((2,), 0),
}


def _block_view_dims(tensor: torch.Tensor, block_shape: Sequence[int]) -> tuple[int, int, int]:
    if block_shape is None or len(block_shape) != 4:
        raise ValueError("Blocks need kwargs.block_shape as [repetitions, depth, height, width]")
    reps, depth, height, width = (int(v) for v in block_shape)
    if not height == width == 1:
        raise ValueError("only block shapes [repetitions, depth, 1, 1] are supported")
    if tensor.dim() != 4:
        raise ValueError(f"Blocks need a 4D tensor, got shape {tuple(tensor.shape)}")
    filters, channels = tensor.size(0), tensor.size(1)
    kernel = tensor.size(2) * tensor.size(3)
    if tensor.numel() % (reps * depth) != 0:
        raise ValueError(
            f"block shape {list(block_shape)} does not divide tensor shape {tuple(tensor.shape)}"
        )
    if depth > 1:
        return filters * channels // (reps * depth), reps * depth, kernel
    return filters // reps, reps, channels * kernel


def structure_norms(
    tensor: torch.Tensor,
    group_type: str,
    p: int = 1,
    block_shape: Sequence[int] | None = None,
    length_normalized: bool = True,
) -> torch.Tensor:
    """One norm per structure: Distiller's ranking score (mean-Lp norm unless ``length_normalized`` is off).

    ``Rows`` follows Distiller's transposed-GEMM convention: for a Linear it scores the stored
    matrix's columns (input features), exactly like ``Channels``. ``Cols`` scores stored rows.
    Blocks are scored by their plain (not normalised) Lp norm, as Distiller does.
    """
    with torch.no_grad():
        t = tensor.detach()
        if group_type in _SLICE_GROUPS:
            ranks, dim = _SLICE_GROUPS[group_type]
            if t.dim() not in ranks:
                raise ValueError(
                    f"{group_type} structures need a tensor of rank {ranks}, got shape {tuple(t.shape)}"
                )
            return slice_norms(t, dim, p, length_normalized)
        if group_type == "2D":
            if t.dim() != 4:
                raise ValueError(f"2D kernels need a 4D tensor, got shape {tuple(t.shape)}")
            view = t.reshape(-1, t.size(2) * t.size(3))
        elif group_type == "Blocks":
            dims = _block_view_dims(t, block_shape)
            return _norm(t.reshape(*dims), p, dim=1).reshape(-1)
        else:
            raise ValueError(f"unknown group type {group_type!r}")
        norms = _norm(view, p, dim=1)
        if length_normalized:
            norms = norms / view.size(1)
        return norms


def expand_binary_map(
    tensor: torch.Tensor, group_type: str, binary_map: torch.Tensor, block_shape: Sequence[int] | None = None
) -> torch.Tensor:
    """Turn one value per structure into a full mask of the tensor's shape."""
    bmap = binary_map.to(device=tensor.device, dtype=tensor.dtype)
    shape = tensor.shape
    if group_type in ("Filters", "3D"):
        return bmap.view(-1, *([1] * (tensor.dim() - 1))).expand(shape).contiguous()
    if group_type in ("Channels", "Rows"):
        return bmap.view(1, -1, *([1] * (tensor.dim() - 2))).expand(shape).contiguous()
    if group_type == "Cols":
        return bmap.view(-1, 1).expand(shape).contiguous()
    if group_type == "2D":
        return bmap.view(shape[0], shape[1], 1, 1).expand(shape).contiguous()
    if group_type == "Blocks":
        rows, _, cols = _block_view_dims(tensor, block_shape)
        dims = _block_view_dims(tensor, block_shape)
        return bmap.view(rows, 1, cols).expand(*dims).contiguous().view(shape)
    raise ValueError(f"unknown group type {group_type!r}")


def e_greedy_noise(mags: torch.Tensor, noise: float) -> torch.Tensor:
    """With probability ``noise`` the ranking scores are multiplied by normal noise (Distiller's exploration)."""
    if noise and float(torch.rand(())) <= noise:
        return mags * torch.randn_like(mags)
    return mags


def structure_binary_map(
    tensor: torch.Tensor,
    group_type: str,
    sparsity: float,
    p: int = 1,
    block_shape: Sequence[int] | None = None,
    group_size: int = 1,
    noise: float = 0.0,
    scores: torch.Tensor | None = None,
    round_to: int = 1,
) -> torch.Tensor | None:
    """1 for each kept structure, 0 for each pruned one; ``None`` when the fraction prunes nothing.

    With ``round_to`` > 1 the kept count is rounded up to a multiple of it (``round_prune_count``) and
    exactly the lowest-ranked structures go, so the count holds even when scores tie.
    """
    mags = structure_norms(tensor, group_type, p, block_shape) if scores is None else scores
    n = mags.numel()
    if group_type == "Blocks":
        k = int(sparsity * n)
    else:
        k = num_structs_to_prune(n, sparsity, group_size)
    if round_to > 1 and group_type != "Blocks":
        k = round_prune_count(n, k, round_to)
    if k <= 0 or sparsity <= 0:
        return None
    mags = e_greedy_noise(mags, noise)
    if round_to > 1 and group_type != "Blocks":
        return lowest_k_map(mags, k, tensor.dtype)
    bottomk = torch.topk(mags, k, largest=False, sorted=True)
    binary_map = mags.gt(bottomk.values[-1]).to(tensor.dtype)
    if k < n and not binary_map.any():
        # every score ties with the cut: Distiller would remove all structures; remove exactly k
        binary_map = torch.ones_like(binary_map)
        binary_map[bottomk.indices] = 0
    return binary_map


def structure_mask(
    tensor: torch.Tensor,
    group_type: str,
    sparsity: float,
    p: int = 1,
    block_shape: Sequence[int] | None = None,
) -> torch.Tensor:
    """A full mask removing the lowest-ranked ``floor(sparsity * n)`` structures (all ones if none)."""
    bmap = structure_binary_map(tensor, group_type, sparsity, p, block_shape)
    if bmap is None:
        return torch.ones_like(tensor)
    return expand_binary_map(tensor, group_type, bmap, block_shape)


def group_threshold_mask(
    tensor: torch.Tensor, group_type: str, threshold: float, criteria: str | None
) -> torch.Tensor | None:
    """Distiller's group thresholding: a structure survives if its criterion exceeds ``threshold``.

    The group type's target and the criterion's metric are the engine's (their names are
    :mod:`prunecli.schedule.vocabulary`'s): ``Max`` is the largest |w| of the structure,
    ``Mean_Abs`` the mean |w| over all its elements (e.g. over every filter's kernel for a
    channel); ``None`` means ``Max``. ``4D`` returns ``None`` (no mask) when the whole tensor
    survives, else all zeros.
    """
    from prunecli.engine.metrics import METRICS
    from prunecli.engine.targets import TensorTarget, Unit, threshold_target
    from prunecli.schedule.vocabulary import THRESHOLD_CRITERIA

    metric_kind = THRESHOLD_CRITERIA.get(criteria or "Max")
    if metric_kind is None:
        raise ValueError(f"threshold_criteria must be one of {list(THRESHOLD_CRITERIA)}, got {criteria!r}")
    with torch.no_grad():
        t = tensor.detach()
        target = threshold_target(group_type, t)
        unit = Unit("tensor", ("tensor",))
        keep = METRICS.get(metric_kind)().reduce(target.view(unit, {"tensor": t})).gt(threshold)
        if isinstance(target, TensorTarget):
            return None if bool(keep.all()) else torch.zeros_like(t)
        return target.expand(unit, keep, {"tensor": t})["tensor"]
