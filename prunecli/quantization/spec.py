"""The quantization plan: what every quantizer produces and what int8 conversion consumes.

A quantizer (post-training or quantization-aware) ends by returning the model with its *effective*
float weights (what its fake-quantization saw before rounding: for DoReFa the tanh-normalised
weights, for PACT/QAT the trained ones) together with a :class:`QuantPlan`. The converter to real
int8 and the reports read only the plan and that model, never a quantizer's internals, so a new
quantizer needs no change downstream.

Conventions (those of PyTorch's quantized tensors, so conversion needs no translation):
``q = clamp(round(x / scale + zero_point), qmin, qmax)`` and ``x ~= (q - zero_point) * scale``;
``qmin, qmax`` are ``-2**(bits-1), 2**(bits-1)-1`` when ``signed`` and ``0, 2**bits-1`` otherwise.
For an integral zero point this is PyTorch's ``round(x / scale) + zero_point``. DoReFa's and
BNN's grids are symmetric around zero without a zero level: their zero point is a half-integer
(``(2**bits - 1) / 2``; 0.5 for 1 bit), which PyTorch's integer kernels cannot take, so a converter
keeps such tensors in fake-quant (:attr:`TensorQuant.integral`). A weight with pruned positions
keeps them at exactly zero in the effective weights even where zero is off the grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

#: Distiller's LinearQuantMode names
MODES: tuple[str, ...] = ("SYMMETRIC", "ASYMMETRIC_UNSIGNED", "ASYMMETRIC_SIGNED")


@dataclass
class TensorQuant:
    """How one tensor (a weight, or a layer's input or output activation) is quantized."""

    bits: int
    signed: bool
    #: a 0-d tensor (per tensor) or a 1-d tensor along ``axis`` (per channel)
    scale: torch.Tensor
    zero_point: torch.Tensor
    axis: int | None = None

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1

    @property
    def integral(self) -> bool:
        """Whether the zero point is an integer (PyTorch's quantized kernels need one)."""
        return bool(torch.all(self.zero_point == torch.round(self.zero_point)))

    def _along(self, value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        value = value.to(like.device, like.dtype)
        if self.axis is None or value.dim() == 0:
            return value
        shape = [1] * like.dim()
        shape[self.axis] = -1
        return value.reshape(shape)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """The integers ``clamp(round(x / scale + zero_point), qmin, qmax)`` (as floats)."""
        scale, zp = self._along(self.scale, x), self._along(self.zero_point, x)
        return torch.clamp(torch.round(x / scale + zp), self.qmin, self.qmax)

    def dequantize(self, q: torch.Tensor) -> torch.Tensor:
        return (q - self._along(self.zero_point, q)) * self._along(self.scale, q)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bits": self.bits,
            "signed": self.signed,
            "scale": self.scale.detach().cpu(),
            "zero_point": self.zero_point.detach().cpu(),
            "axis": self.axis,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorQuant:
        return cls(
            bits=int(data["bits"]),
            signed=bool(data["signed"]),
            scale=data["scale"],
            zero_point=data["zero_point"],
            axis=data.get("axis"),
        )


@dataclass
class LayerQuant:
    """One quantized layer (a module of the model, by its ``named_modules`` name)."""

    name: str
    #: the class that produced it, e.g. "PostTrainLinearQuantizer", "DorefaQuantizer", "NaiveQuantizer"
    method: str
    mode: str = "SYMMETRIC"
    weight: TensorQuant | None = None
    input: TensorQuant | None = None
    output: TensorQuant | None = None
    bits_accum: int = 32
    #: the bias stays float unless quantized with the accumulator's bits (Distiller's convention)
    bias_bits: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "method": self.method,
            "mode": self.mode,
            "bits_accum": self.bits_accum,
            "bias_bits": self.bias_bits,
        }
        for key in ("weight", "input", "output"):
            value = getattr(self, key)
            out[key] = value.to_dict() if value is not None else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerQuant:
        tensors = {
            key: TensorQuant.from_dict(data[key]) if data.get(key) is not None else None
            for key in ("weight", "input", "output")
        }
        return cls(
            name=str(data["name"]),
            method=str(data["method"]),
            mode=str(data.get("mode", "SYMMETRIC")),
            bits_accum=int(data.get("bits_accum", 32)),
            bias_bits=data.get("bias_bits"),
            **tensors,
        )


@dataclass
class QuantPlan:
    """Every quantized layer of a model; layers not listed stay float."""

    layers: dict[str, LayerQuant] = field(default_factory=dict)

    def add(self, layer: LayerQuant) -> None:
        self.layers[layer.name] = layer

    def bits_of(self, name: str) -> int | None:
        """The weight bits of layer ``name`` (None when it stays float), for reports."""
        layer = self.layers.get(name)
        return layer.weight.bits if layer is not None and layer.weight is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "layers": [layer.to_dict() for layer in self.layers.values()]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantPlan:
        plan = cls()
        for item in data.get("layers", []):
            plan.add(LayerQuant.from_dict(item))
        return plan
