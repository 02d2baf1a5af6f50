"""Where quantization lives in a checkpoint, as plain data (``torch.load(weights_only=True)`` reads it).

Two entries of the checkpoint's ``extras``:

* ``extras["quantization"]``: :meth:`QuantPlan.to_dict` of a float checkpoint whose model a
  quantizer prepared (effective float weights); ``prunecli thin`` and the end of ``prunecli run``
  convert such a checkpoint to int8.
* ``extras["int8"]``: an int8 checkpoint (:class:`Int8Record`): the plan, the BatchNorm pairs
  folded before conversion, and each quantized layer's integer weight codes (one byte each, two
  per byte at 4 bits or fewer). The checkpoint's ``state_dict`` then holds the folded model's
  remaining float tensors (biases, unquantized layers), not the quantized weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from prunecli.export.fold import FoldedPair
from prunecli.quantization.packing import PackedCodes
from prunecli.quantization.spec import QuantPlan

PLAN_KEY = "quantization"
INT8_KEY = "int8"
RECORD_VERSION = 1


def _extras(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    extras = payload.get("extras")
    return extras if isinstance(extras, Mapping) else {}


def _compact_plan(plan: QuantPlan) -> dict[str, Any]:
    """The plan as plain data with float32 scales and int32 zero points (float32 where half-integers)."""
    data = plan.to_dict()
    for layer in data["layers"]:
        for key in ("weight", "input", "output"):
            tq = layer.get(key)
            if tq is not None:
                tq["scale"] = tq["scale"].to(torch.float32)
                zero = tq["zero_point"]
                whole = bool(torch.all(zero == torch.round(zero)))
                tq["zero_point"] = zero.to(torch.int32) if whole else zero.to(torch.float32)
    return data


@dataclass
class Int8Record:
    """An int8 model as stored: plan, folded pairs, integer weight codes."""

    plan: QuantPlan
    folded: list[FoldedPair]
    codes: dict[str, PackedCodes]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "plan": _compact_plan(self.plan),
            "folded": [[pair.layer, pair.norm] for pair in self.folded],
            "codes": {name: codes.to_dict() for name, codes in self.codes.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Int8Record:
        return cls(
            plan=QuantPlan.from_dict(data["plan"]),
            folded=[FoldedPair(str(layer), str(norm)) for layer, norm in data.get("folded", [])],
            codes={name: PackedCodes.from_dict(item) for name, item in data.get("codes", {}).items()},
        )

    def nbytes(self) -> int:
        """Bytes of the stored codes and of the plan's scales and zero points."""
        return tensor_bytes(self.to_dict())


def int8_record(payload: Mapping[str, Any]) -> Int8Record | None:
    """The int8 model stored in a checkpoint, or None for a float checkpoint."""
    data = _extras(payload).get(INT8_KEY)
    return Int8Record.from_dict(data) if isinstance(data, Mapping) else None


def stored_plan(payload: Mapping[str, Any]) -> QuantPlan | None:
    """The quantization plan of a checkpoint: of its int8 model, or the one a quantizer left."""
    record = int8_record(payload)
    if record is not None:
        return record.plan
    data = _extras(payload).get(PLAN_KEY)
    return QuantPlan.from_dict(data) if isinstance(data, Mapping) else None


def store_plan(payload: dict[str, Any], plan: QuantPlan) -> dict[str, Any]:
    """Record a quantizer's plan in ``payload`` (in place; returned for chaining)."""
    payload.setdefault("extras", {})[PLAN_KEY] = plan.to_dict()
    return payload


def tensor_bytes(tree: Any) -> int:
    """Bytes of every tensor in a nested dict / list / tuple (``numel * element_size``)."""
    if isinstance(tree, torch.Tensor):
        return tree.numel() * tree.element_size()
    if isinstance(tree, Mapping):
        return sum(tensor_bytes(value) for value in tree.values())
    if isinstance(tree, list | tuple):
        return sum(tensor_bytes(value) for value in tree)
    return 0


def model_bytes(payload: Mapping[str, Any]) -> int:
    """Bytes of a checkpoint's model as stored: its ``state_dict`` and, for int8, the codes and ranges.

    The same count for float and int8 checkpoints (tensor payload only, no container overhead),
    so the two compare like for like.
    """
    return tensor_bytes(payload.get("state_dict") or {}) + tensor_bytes(_extras(payload).get(INT8_KEY) or {})
