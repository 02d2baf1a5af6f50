"""The quantizer's place in the compression scheduler's timeline.

As in Distiller, a quantization-aware quantizer prepares the model once, when its policy is
added (so the optimizer sees the learned clip values from the first step); the rounding then
happens in every forward pass. A post-training quantizer has no policy: it is applied once the
training epochs are over (:meth:`QuantizationStage.apply_post_training`). Either way the run
ends with :meth:`QuantizationStage.finalize`: effective float weights in the model and a
:class:`~prunecli.quantization.spec.QuantPlan`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from prunecli.compression.masker import MaskSet
from prunecli.compression.policies import ScheduledPolicy

from .quantizers import Quantizer
from .spec import QuantPlan


def mask_lookup(maskset: MaskSet):
    """``name -> mask`` over the scheduler's maskers, read at call time (masks change per epoch)."""

    def lookup(name: str) -> torch.Tensor | None:
        return maskset.masks.get(name)

    return lookup


def _ops_state(quantizer: Quantizer) -> dict[str, Any]:
    return {
        f"{layer.name}:{role}": {k: v.detach().cpu().clone() for k, v in op.state_dict().items()}
        for layer in quantizer.layers
        for role, op in layer.ops.items()
    }


class QuantizationPolicy(ScheduledPolicy):
    """Holds a prepared quantization-aware quantizer; its state is its fake-quant ops' values."""

    def __init__(self, quantizer: Quantizer) -> None:
        self.quantizer = quantizer
        self.name = quantizer.name

    def state_dict(self) -> dict[str, Any]:
        return {"ops": _ops_state(self.quantizer)}

    def load_state_dict(self, state: Mapping[str, Any], model: nn.Module, maskset: MaskSet) -> None:
        saved = state.get("ops", {})
        for layer in self.quantizer.layers:
            for role, op in layer.ops.items():
                entry = saved.get(f"{layer.name}:{role}")
                if entry is not None:
                    op.load_state_dict(entry)


class QuantizationStage:
    """The schedule's quantizer (at most one, as in Distiller) from build to the end of the run."""

    def __init__(self, quantizer: Quantizer, maskset: MaskSet, optimizer: Any = None) -> None:
        self.quantizer = quantizer
        self.maskset = maskset
        self.optimizer = optimizer

    @property
    def post_training(self) -> bool:
        return self.quantizer.post_training

    def prepare(self) -> None:
        self.quantizer.prepare(mask_lookup(self.maskset), self.optimizer)

    def apply_post_training(self) -> None:
        """Attach a post-training quantizer to the trained model (no-op for the others)."""
        if self.post_training:
            self.prepare()

    def finalize(self) -> QuantPlan:
        """Effective float weights into the model, hooks removed; the plan describes the rounding."""
        if not self.quantizer.prepared:
            self.prepare()
        return self.quantizer.finalize()
