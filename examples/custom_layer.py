"""A thinning rule for a user layer type, registered by a plugin the schedule names.

``ScaledConv`` is a convolution with a learned per-filter scale. Registered *like* a built-in
convolution (its weight and bias are laid out the same), the dependency graph follows its
channels and thinning removes its pruned filters; the ``attributes`` rule rewrites its own
attribute names and slices its scale. The schedule's ``plugins:`` calls :func:`register` before the
pruner is built.

    python examples/custom_layer.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prunecli.thinning import register_custom_layer

SCHEDULE = """
version: 1
pruners:
  filters:
    plugins: [custom_layer:register]
    target: filters
    metric: l1
    sparsity: 0.5
    weights: [0.weight]
extensions:
  thin: {class: FilterRemover, thinning_func_str: remove_filters, arch: custom, dataset: none}
policies:
  - pruner: {instance_name: filters}
    epochs: [0]
  - extension: {instance_name: thin}
    epochs: [0]
"""


class ScaledConv(nn.Module):
    """``scale[c] * conv(x)[c]``: a user layer prunecli knows nothing about by itself."""

    def __init__(self, cin: int, cout: int, k: int) -> None:
        super().__init__()
        self.cin, self.cout, self.groups = cin, cout, 1
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k) * 0.3)
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = torch.ones(cout)

    # the graph handler for convolutions reads these names
    @property
    def in_channels(self) -> int:
        return self.cin

    @property
    def out_channels(self) -> int:
        return self.cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=1) * self.scale.view(1, -1, 1, 1)


def scaled_conv_attributes(module: nn.Module, kind: str) -> dict[str, int]:
    """After thinning: the new channel counts (and the matching slice of the scale)."""
    kept = (module.weight.detach().reshape(module.weight.size(0), -1) != 0).any(dim=1)
    if module.scale.numel() != module.weight.size(0):
        module.scale = module.scale[: module.weight.size(0)] if kept.all() else module.scale[kept]
    module.cout, module.cin = module.weight.shape[0], module.weight.shape[1]
    return {}


def register() -> None:
    """The plugin: make ScaledConv prunable and thinnable like a convolution."""
    register_custom_layer(ScaledConv, like="conv", attributes=scaled_conv_attributes)


def run() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    from prunecli.compression import build_scheduler
    from prunecli.schedule import load_schedule

    torch.manual_seed(0)
    model = nn.Sequential(ScaledConv(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))
    example = torch.randn(1, 3, 6, 6)
    schedule = load_schedule("custom_layer.yaml", text=SCHEDULE)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = build_scheduler(schedule, model, optimizer, example_input=example)
    scheduler.on_epoch_begin(0)
    masks = {n: m.clone() for n, m in scheduler.masks.items() if m is not None}
    scheduler.on_minibatch_begin(0, 0, 1, optimizer)  # the thinning extension runs here
    return model, masks


if __name__ == "__main__":
    # run through the importable module, the one the schedule's plugin registers the layer from
    import custom_layer

    model, _ = custom_layer.run()
    print("ScaledConv after thinning:", tuple(model[0].weight.shape), "next conv:", tuple(model[2].weight.shape))
