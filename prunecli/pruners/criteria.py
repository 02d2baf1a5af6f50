"""Mask criteria shared by the pruners, the regularizers and sensitivity analysis.

Every function is pure: it reads a tensor and returns a new mask (same shape and dtype as the
tensor), a count or a per-structure binary map. The numbers follow Distiller: element levels use
``k = int(level * numel)`` and keep ``|w| > k-th smallest``; structures are ranked by their
length-normalised Lp norm and ``floor(fraction * n)`` are removed, never all of them (the
structures themselves are the engine's targets, :func:`prunecli.engine.targets.ranking_target`).
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


def e_greedy_noise(mags: torch.Tensor, noise: float) -> torch.Tensor:
    """With probability ``noise`` the ranking scores are multiplied by normal noise (Distiller's exploration)."""
    if noise and float(torch.rand(())) <= noise:
        return mags * torch.randn_like(mags)
    return mags


def structure_mask(
    tensor: torch.Tensor,
    group_type: str,
    sparsity: float,
    p: int = 1,
    block_shape: Sequence[int] | None = None,
) -> torch.Tensor:
    """A full mask removing the lowest-ranked ``floor(sparsity * n)`` structures (all ones if none):
    what Distiller's L1/L2-ranked pruner (the engine's composition of it) leaves in one tensor."""
    from prunecli.pruners import PRUNERS

    kwargs = {"block_shape": list(block_shape)} if block_shape is not None else None
    pruner = PRUNERS[f"L{p}RankedStructureParameterPruner"]("mask", group_type, sparsity, ["t"], kwargs=kwargs)
    keep = pruner.keep("t", tensor, sparsity)
    return torch.ones_like(tensor) if keep is None else pruner.mask_from_keep("t", tensor, keep)


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
