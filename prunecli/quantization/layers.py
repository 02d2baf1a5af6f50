"""Attach fake-quantization to one layer without renaming anything in the model.

Quantizers elsewhere replace a layer by a wrapper module, which renames every parameter
(``conv1.weight`` -> ``conv1.wrapped_module.float_weight``) and so breaks masks, schedules and
checkpoints. Here a layer keeps its parameters: a forward pre-hook rounds its input and lets the
layer read a rounded copy of its weight for that one call (the float weight stays the trained
parameter, gradients reach it straight through), and a forward hook rounds its output. The
fake-quant ops are not registered in the model, so ``model.state_dict()`` keeps exactly its keys
and loads into the plain model; their learned values (PACT's clip, LSQ's step) are trained
through their own optimizer group and saved through the quantization policy's state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .fakequant import TensorFakeQuant

ROLES = ("weight", "input", "output")
#: Returns the mask of a parameter (or None) so rounded weights keep pruned zeros at zero.
MaskLookup = Callable[[str], torch.Tensor | None]


class QuantizedLayer:
    """The hooks of one layer; :meth:`remove` restores the plain layer."""

    def __init__(
        self,
        name: str,
        module: nn.Module,
        *,
        weight: TensorFakeQuant | None = None,
        input: TensorFakeQuant | None = None,
        output: TensorFakeQuant | None = None,
        mask_of: MaskLookup | None = None,
    ) -> None:
        self.name = name
        self.module = module
        self.mask_of = mask_of
        self.ops: dict[str, TensorFakeQuant] = {}
        device = next((p.device for p in module.parameters(recurse=False)), None)
        for role, op in (("weight", weight), ("input", input), ("output", output)):
            if op is not None:
                self.ops[role] = op.to(device) if device is not None else op
        self._handles = [
            module.register_forward_pre_hook(self._before),
            module.register_forward_hook(self._after),
        ]

    # the parameter's full name, for masks
    @property
    def weight_name(self) -> str:
        return f"{self.name}.weight" if self.name else "weight"

    def quantized_weight(self) -> torch.Tensor:
        w = self.module._parameters["weight"]
        assert w is not None
        out = self.ops["weight"](w)
        mask = self.mask_of(self.weight_name) if self.mask_of is not None else None
        if mask is not None:
            out = out * mask.to(out)
        return out

    def _before(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        for op in self.ops.values():
            op.train(module.training)
        if "weight" in self.ops:
            # shadow the parameter for this call: attribute lookup finds __dict__ before _parameters
            module.__dict__["weight"] = self.quantized_weight()
        if "input" in self.ops and args and isinstance(args[0], torch.Tensor):
            return (self.ops["input"](args[0]), *args[1:])
        return None

    def _after(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        module.__dict__.pop("weight", None)
        module.__dict__.pop("bias", None)  # a bias rounded for this call (post-training quantization)
        if "output" in self.ops and isinstance(output, torch.Tensor):
            return self.ops["output"](output)
        return None

    def effective_weight(self) -> torch.Tensor | None:
        """The float weight the rounding starts from (pruned positions kept at zero)."""
        if "weight" not in self.ops:
            return None
        w = self.module._parameters["weight"]
        assert w is not None
        with torch.no_grad():
            out = self.ops["weight"].effective(w.detach())
            mask = self.mask_of(self.weight_name) if self.mask_of is not None else None
            return out * mask.to(out) if mask is not None else out

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.module.__dict__.pop("weight", None)
        self.module.__dict__.pop("bias", None)
