"""Per-layer compute summary (Distiller's ``--summary compute``), measured with forward hooks.

MACs follow Distiller's definition so published figures are comparable: a convolution costs
``volume(OFM) * C_in / groups * prod(kernel)`` and a linear layer ``in_features * out_features``,
per sample, biases ignored.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class LayerCompute:
    name: str
    type: str
    attrs: str
    ifm: tuple[int, ...]
    ofm: tuple[int, ...]
    weights_volume: int
    macs: int
    effective_macs: int  # MACs counting only non-zero weights (masked, unthinned layers)

    @property
    def ifm_volume(self) -> int:
        return math.prod(self.ifm)

    @property
    def ofm_volume(self) -> int:
        return math.prod(self.ofm)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ifm"], d["ofm"] = list(self.ifm), list(self.ofm)
        d["ifm_volume"], d["ofm_volume"] = self.ifm_volume, self.ofm_volume
        return d


def _layer_cost(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> tuple[str, int, int]:
    weight = module.weight
    density = float((weight != 0).sum()) / max(weight.numel(), 1)
    if isinstance(module, _CONV):
        kernel = math.prod(module.kernel_size)
        per_sample_out = math.prod(out.shape[1:])
        macs = per_sample_out * (module.in_channels // module.groups) * kernel
        attrs = f"k={tuple(module.kernel_size)}, s={tuple(module.stride)}, g={module.groups}"
    else:
        positions = math.prod(out.shape[1:-1]) if out.dim() > 2 else 1
        macs = positions * module.in_features * module.out_features
        attrs = ""
    return attrs, macs, round(macs * density)


def compute_summary(model: nn.Module, example_input: torch.Tensor) -> list[LayerCompute]:
    """Run one forward pass (batch of one sample) and record every conv/linear layer."""
    rows: list[LayerCompute] = []
    names = {m: n for n, m in model.named_modules()}
    handles = []

    def hook(module: nn.Module, inputs, output) -> None:
        inp = inputs[0]
        attrs, macs, eff = _layer_cost(module, inp, output)
        rows.append(
            LayerCompute(
                name=names[module],
                type=type(module).__name__,
                attrs=attrs,
                ifm=tuple(inp.shape),
                ofm=tuple(output.shape),
                weights_volume=module.weight.numel(),
                macs=macs,
                effective_macs=eff,
            )
        )

    for module in model.modules():
        if isinstance(module, (*_CONV, nn.Linear)):
            handles.append(module.register_forward_hook(hook))
    observe_one_sample(model, example_input, handles)
    return rows


def observe_one_sample(model: nn.Module, example_input: torch.Tensor, handles: list) -> None:
    """One eval-mode, no-grad forward pass of one sample; then ``handles`` (forward hooks) go."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_input[:1])
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()


def total_macs(model: nn.Module, example_input: torch.Tensor) -> int:
    return sum(r.macs for r in compute_summary(model, example_input))
