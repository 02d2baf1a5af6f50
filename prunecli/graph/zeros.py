"""Rules that say which channel values are identically zero, given the current weights.

The graph walk records one rule per value-creating operation (in execution order); thinning
evaluates them against the live tensors. A channel whose value reaches every reader as zero can
be removed without changing the function (``filters`` mode).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

TensorLookup = Callable[[str], torch.Tensor]
ZeroLookup = Callable[[str, int], np.ndarray]  # (tensor name, dim) -> zero slice flags


class SliceZeros:
    """Memoised :func:`slice_is_zero` by tensor name (a weight is read along dim 0 and dim 1)."""

    def __init__(self, lookup: ZeroLookup) -> None:
        self.lookup = lookup
        self._nonzero: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, dim: int) -> np.ndarray:
        nz = self._nonzero.get(name)
        if nz is None:
            nz = self._nonzero[name] = self.lookup(name).detach() != 0
        if nz.dim() == 0:
            return np.array([not bool(nz)])
        if nz.dim() == 1:
            return (~nz).cpu().numpy()
        others = tuple(d for d in range(nz.dim()) if d != dim)
        return (~nz.any(dim=others)).cpu().numpy()


def slice_is_zero(tensor: torch.Tensor, dim: int) -> np.ndarray:
    """For each index along ``dim``: is the whole slice zero?"""
    t = tensor.detach()
    if t.dim() == 0:
        return np.array([bool(t == 0)])
    if t.dim() == 1:
        return (t == 0).cpu().numpy()
    others = tuple(d for d in range(t.dim()) if d != dim)
    return (~(t != 0).any(dim=others)).cpu().numpy()


@dataclass
class ParamOperand:
    """A parameter broadcast along the channel dim, e.g. ViT's position embedding or a layer scale."""

    tensor: str
    dim: int


Operand = "np.ndarray | ParamOperand | bool"


def _operand_zero(op, zero: np.ndarray, lookup: ZeroLookup, size: int) -> np.ndarray:
    if isinstance(op, bool):
        return np.full(size, op)
    if isinstance(op, ParamOperand):
        return lookup(op.tensor, op.dim)
    return zero[op.ravel()]


@dataclass
class ProducerRule:
    """Conv/linear output channel ``k`` is zero when filter ``k`` and bias ``k`` are zero."""

    out_ids: np.ndarray
    weight: str
    bias: str | None
    start: int = 0  # first row of this output in ``weight`` (q, k, v share one packed weight)

    def apply(self, zero: np.ndarray, lookup: ZeroLookup) -> None:
        stop = self.start + len(self.out_ids)
        z = lookup(self.weight, 0)[self.start : stop].copy()
        if self.bias is not None:
            z &= lookup(self.bias, 0)[self.start : stop]
        zero[self.out_ids] = z


@dataclass
class AffineNormRule:
    """LayerNorm/GroupNorm output channel: zero when its scale and shift are (whatever its input)."""

    out_ids: np.ndarray
    weight: str | None
    bias: str | None

    def apply(self, zero: np.ndarray, lookup: ZeroLookup) -> None:
        n = len(self.out_ids)
        gamma0 = lookup(self.weight, 0) if self.weight else np.zeros(n, bool)
        beta0 = lookup(self.bias, 0) if self.bias else np.ones(n, bool)
        zero[self.out_ids] = gamma0 & beta0


@dataclass
class DepthwiseRule:
    """Depthwise conv: zero when (its filter or its input channel is zero) and its bias is zero."""

    in_ids: np.ndarray  # one input id per output channel
    out_ids: np.ndarray
    weight: str
    bias: str | None

    def apply(self, zero: np.ndarray, lookup: ZeroLookup) -> None:
        z = lookup(self.weight, 0) | zero[self.in_ids]
        if self.bias is not None:
            z &= lookup(self.bias, 0)
        zero[self.out_ids] = z


@dataclass
class NormRule:
    """Per-channel norm (BatchNorm): zero out only when it stays zero in train and eval mode.

    With gamma = beta = 0 the output is zero whatever the input; with a zero input the output is
    ``beta`` in train mode and ``beta - mean * gamma / sqrt(var + eps)`` in eval mode.
    """

    in_ids: np.ndarray
    out_ids: np.ndarray
    weight: str | None
    bias: str | None
    running_mean: str | None

    def apply(self, zero: np.ndarray, lookup: ZeroLookup) -> None:
        n = len(self.out_ids)
        gamma0 = lookup(self.weight, 0) if self.weight else np.zeros(n, bool)
        beta0 = lookup(self.bias, 0) if self.bias else np.ones(n, bool)
        mean0 = lookup(self.running_mean, 0) if self.running_mean else np.ones(n, bool)
        zero[self.out_ids] = (gamma0 & beta0) | (zero[self.in_ids] & beta0 & (mean0 | gamma0))


@dataclass
class CombineRule:
    """Element-wise combination: zero when ``all`` (add), ``any`` (mul) or the ``first`` (div) operand is."""

    operands: list
    out_ids: np.ndarray
    mode: str  # "all" | "any" | "first"

    def apply(self, zero: np.ndarray, lookup: ZeroLookup) -> None:
        size = self.out_ids.size
        parts = [_operand_zero(op, zero, lookup, size) for op in self.operands]
        if self.mode == "first":  # division: zero when the numerator is
            result = parts[0]
        elif self.mode == "all":
            result = np.logical_and.reduce(parts)
        else:
            result = np.logical_or.reduce(parts)
        zero[self.out_ids.ravel()] = result


def evaluate(rules: list, num_ids: int, lookup: ZeroLookup) -> np.ndarray:
    """Zero flag for every channel id (ids no rule creates, like the model input, are non-zero)."""
    zero = np.zeros(num_ids, dtype=bool)
    for rule in rules:
        rule.apply(zero, lookup)
    return zero
