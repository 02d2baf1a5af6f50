"""A minimal post-training plan: min/max ranges of a few batches, per-channel symmetric weights.

It exists so that int8 conversion, its tests and the benchmarks can start from a plan without a
full quantizer: weights symmetric signed 8-bit per output channel, activations asymmetric
unsigned 8-bit per tensor from the observed minimum and maximum (always including 0). A module
whose only consumer is a ReLU records its range after that ReLU (the converter fuses the two); a
BatchNorm records its output range, which becomes the range of the layer it is folded into.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

from prunecli.models.modules import EltwiseAdd
from prunecli.quantization.int8 import KERNELS, AddLeafTracer, single_relu_user
from prunecli.quantization.spec import LayerQuant, QuantPlan, TensorQuant

METHOD = "MinMaxCalibration"


def activation_range(low: float, high: float, bits: int = 8) -> TensorQuant:
    """Asymmetric unsigned ``bits``-bit range covering ``[min(low, 0), max(high, 0)]``."""
    low, high = min(low, 0.0), max(high, 0.0)
    levels = 2**bits - 1
    scale = (high - low) / levels if high > low else 1.0
    zero = int(round(-low / scale))
    return TensorQuant(bits, False, torch.tensor(scale), torch.tensor(zero), None)


def weight_range(weight: torch.Tensor, bits: int = 8, per_channel: bool = True) -> TensorQuant:
    """Symmetric signed ``bits``-bit range: ``max |w| / (2**(bits-1) - 1)`` per output channel or tensor."""
    top = 2 ** (bits - 1) - 1
    if per_channel:
        peak = weight.detach().abs().flatten(1).amax(dim=1)
        scale = torch.where(peak > 0, peak / top, torch.ones_like(peak))
        return TensorQuant(bits, True, scale, torch.zeros_like(scale, dtype=torch.int64), 0)
    peak = float(weight.detach().abs().max())
    return TensorQuant(bits, True, torch.tensor(peak / top if peak > 0 else 1.0), torch.tensor(0), None)


class _Ranges:
    def __init__(self) -> None:
        self.low: dict[str, float] = {}
        self.high: dict[str, float] = {}

    def add(self, key: str, value: torch.Tensor) -> None:
        low, high = float(value.min()), float(value.max())
        self.low[key] = min(self.low.get(key, low), low)
        self.high[key] = max(self.high.get(key, high), high)

    def get(self, key: str, bits: int) -> TensorQuant:
        return activation_range(self.low[key], self.high[key], bits)


def minmax_plan(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    example_input: torch.Tensor,
    *,
    bits: int = 8,
    activation_bits: int = 8,
    per_channel: bool = True,
) -> QuantPlan:
    """A plan for every conv / linear layer, BatchNorm and residual addition of ``model`` (eval mode).

    Weights and ranges are those of ``model`` as given; a BatchNorm's entry has only an output range
    (what the folded layer outputs, used by :func:`prunecli.quantization.int8.fold_for_int8`).
    ``example_input`` is unused by the recording itself and kept for symmetry with the converter.
    """
    del example_input
    model = model.eval()
    modules = dict(model.named_modules())
    graph: fx.Graph = AddLeafTracer().trace(model)
    after_relu = {
        str(node.target)
        for node in graph.nodes
        if node.op == "call_module" and single_relu_user(node, modules) is not None
    }
    layers = [name for name, m in modules.items() if type(m) in KERNELS]
    outputs_only = [name for name, m in modules.items() if isinstance(m, EltwiseAdd | _BatchNorm)]
    ranges = _Ranges()

    def record(name: str):
        def hook(_module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            if name in layers:
                ranges.add(f"{name}:in", args[0])
            ranges.add(f"{name}:out", out.clamp(min=0) if name in after_relu else out)

        return hook

    handles = [modules[name].register_forward_hook(record(name)) for name in layers + outputs_only]
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
    finally:
        for handle in handles:
            handle.remove()
    plan = QuantPlan()
    for name in layers:
        if f"{name}:in" not in ranges.low:
            continue  # never called
        plan.add(
            LayerQuant(
                name,
                METHOD,
                "ASYMMETRIC_UNSIGNED",
                weight=weight_range(modules[name].weight, bits, per_channel),
                input=ranges.get(f"{name}:in", activation_bits),
                output=ranges.get(f"{name}:out", activation_bits),
            )
        )
    for name in outputs_only:
        if f"{name}:out" in ranges.low:
            output = ranges.get(f"{name}:out", activation_bits)
            plan.add(LayerQuant(name, METHOD, "ASYMMETRIC_UNSIGNED", output=output))
    return plan
