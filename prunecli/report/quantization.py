"""The report's quantization section: bits per layer, model size, int8 latency and accuracy.

Present when the checkpoint carries a quantization plan (a quantizer's float checkpoint, converted
here on the fly) or holds an int8 model. Sizes count the bytes of the stored tensors
(:func:`prunecli.quantization.stored.model_bytes`), the same way for all three models:

* ``fp32_bytes``: the dense architecture in float32;
* ``pruned_bytes``: the thinned architecture in float32 (the checkpoint's shapes, BatchNorm kept);
* ``int8_bytes``: the int8 model as stored (codes, ranges, float biases and unquantized layers).

Latency compares the compressed model in float with BatchNorm folded (what the int8 model folds
too) against the int8 model, same batch, same threads.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from prunecli.quantization.int8 import Int8Model
from prunecli.quantization.spec import QuantPlan
from prunecli.quantization.stored import model_bytes, stored_plan, tensor_bytes


def _pruned_architecture(dense: nn.Module, payload: Mapping[str, Any]) -> nn.Module:
    """The dense model reshaped by the checkpoint's thinning recipe (weights irrelevant: shapes only)."""
    recipe = payload.get("recipe")
    if not isinstance(recipe, dict):
        return dense
    from prunecli.thinning import ThinningRecipe, apply_recipe

    shaped = copy.deepcopy(dense)
    apply_recipe(shaped, ThinningRecipe.from_dict(recipe))
    return shaped


def layer_bits(plan: QuantPlan, int8: Int8Model) -> list[dict[str, Any]]:
    """One entry per planned layer: its bits and how the int8 model runs it."""
    runs = {name: "int8" for name in int8.kernels}
    runs.update({name: "fake-quant" for name in int8.simulated})
    rows = []
    for name, layer in plan.layers.items():
        activation = layer.input or layer.output
        rows.append(
            {
                "name": name,
                "method": layer.method,
                "weight_bits": layer.weight.bits if layer.weight is not None else None,
                "activation_bits": activation.bits if activation is not None else None,
                "runs": runs.get(name, "float"),
            }
        )
    return rows


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or not den else num / den


def quantization_section(
    *,
    payload: Mapping[str, Any],
    model: nn.Module,
    dense: nn.Module,
    int8: Int8Model | None,
    example: torch.Tensor,
    latency: Callable[[nn.Module], float] | None,
    evaluate: Callable[[nn.Module], dict[str, Any]] | None,
    fp32_top1: float | None,
) -> dict[str, Any] | None:
    """The section's plain dict, or None when the checkpoint has no quantization plan.

    ``int8``: the int8 model the checkpoint stores (None: convert ``model`` with the stored plan).
    ``latency`` / ``evaluate``: measure one model (None: not requested). ``fp32_top1``: the float
    accuracy to compare with when the float model is no longer in the file.
    """
    plan = stored_plan(payload)
    if plan is None:
        return None
    stored = int8 is not None
    if int8 is None:
        from prunecli.checkpoint.compact import quantize_checkpoint

        converted = quantize_checkpoint(dict(payload), model, example, plan)
        int8, int8_bytes = converted.model, model_bytes(converted.payload)
    else:
        int8_bytes = model_bytes(payload)
    fp32_bytes = tensor_bytes(dense.state_dict())
    pruned_bytes = tensor_bytes(_pruned_architecture(dense, payload).state_dict())
    section: dict[str, Any] = {
        "stored_int8": stored,
        "layers": layer_bits(plan, int8),
        "int8_layers": len(int8.kernels),
        "simulated_layers": len(int8.simulated),
        "fp32_bytes": fp32_bytes,
        "pruned_bytes": pruned_bytes,
        "int8_bytes": int8_bytes,
        "int8_size_ratio": _ratio(int8_bytes, fp32_bytes),
        "int8_vs_pruned_size_ratio": _ratio(int8_bytes, pruned_bytes),
        "fp32_latency_ms": None,
        "int8_latency_ms": None,
        "int8_speedup": None,
        "fp32_top1": fp32_top1,
        "int8_top1": None,
        "int8_top1_delta": None,
    }
    if latency is not None:
        from prunecli.export.fold import fold_batchnorm

        section["fp32_latency_ms"] = latency(fold_batchnorm(model, example).model)
        section["int8_latency_ms"] = latency(int8)
        section["int8_speedup"] = _ratio(section["fp32_latency_ms"], section["int8_latency_ms"])
    if evaluate is not None:
        section["int8_top1"] = evaluate(int8)["top1"]
        if fp32_top1 is not None:
            section["int8_top1_delta"] = section["int8_top1"] - fp32_top1
    return section


def bits_by_tensor(section: Mapping[str, Any] | None) -> dict[str, int]:
    """``"<layer>.weight"`` -> weight bits, for the sparsity table's Bits column."""
    if not section:
        return {}
    return {f"{row['name']}.weight": row["weight_bits"] for row in section["layers"] if row["weight_bits"]}
