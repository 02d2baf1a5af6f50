"""Numerical check that thinning kept the function: compare eval-mode outputs on a probe batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

RELATIVE_TOLERANCE = 1e-4


def flat_outputs(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value.detach()]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in flat_outputs(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in flat_outputs(v)]
    return []


def eval_outputs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return flat_outputs(model(*inputs))
    finally:
        model.train(was_training)


def mismatch(reference: list[torch.Tensor], actual: list[torch.Tensor]) -> str | None:
    """None when equal within tolerance (relative to the reference's scale), else a description."""
    if len(reference) != len(actual):
        return f"{len(actual)} outputs instead of {len(reference)}"
    for k, (ref, out) in enumerate(zip(reference, actual)):
        if ref.shape != out.shape:
            return f"output {k} has shape {tuple(out.shape)} instead of {tuple(ref.shape)}"
        scale = float(ref.abs().max()) if ref.numel() else 0.0
        diff = float((ref.float() - out.float()).abs().max()) if ref.numel() else 0.0
        if not diff <= RELATIVE_TOLERANCE * max(scale, 1e-6):
            return f"output {k} differs by {diff:.3g} (scale {scale:.3g})"
    return None


def layer_outputs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[tuple[str, torch.Tensor]]:
    """Every leaf module's first tensor output, in execution order."""
    captured: list[tuple[str, torch.Tensor]] = []
    handles = []
    for name, m in model.named_modules():
        if name and not any(True for _ in m.children()):

            def hook(module, args, output, name=name):
                outs = flat_outputs(output)
                if outs:
                    captured.append((name, outs[0].clone()))

            handles.append(m.register_forward_hook(hook))
    try:
        eval_outputs(model, inputs)
    finally:
        for h in handles:
            h.remove()
    return captured


def first_divergence(
    before: list[tuple[str, torch.Tensor]],
    after: list[tuple[str, torch.Tensor]],
    kept_channels: Callable[[str], list[int] | None],
) -> str | None:
    """The first layer whose output differs once the removed channels are dropped from the original."""
    for (name, ref), (name_after, out) in zip(before, after):
        if name != name_after:
            return name_after
        ref = _align(ref, out, kept_channels(name))
        if ref is None:
            continue
        if mismatch([ref], [out]) is not None:
            return name
    return None


def _align(ref: torch.Tensor, out: torch.Tensor, kept: list[int] | None) -> torch.Tensor | None:
    if ref.shape == out.shape:
        return ref
    if kept is None or ref.dim() != out.dim():
        return None
    diff = [d for d in range(ref.dim()) if ref.shape[d] != out.shape[d]]
    if len(diff) != 1 or out.shape[diff[0]] != len(kept):
        return None
    return ref.index_select(diff[0], torch.as_tensor(kept, dtype=torch.long))
