"""A user target for the pruning engine: output rows of a Linear layer in pairs.

A target says which weights are kept or removed together. It gives a grouped view (one row per
group) that metrics score, and turns a keep vector back into a mask. The schedule names a
factory for it as ``custom_target:row_pairs`` (with its options next to ``kind``).

    python examples/custom_target.py
"""

from __future__ import annotations

import torch
from torch import nn

from prunecli.engine import Target, TargetError, Unit

SCHEDULE = """
version: 1
pruners:
  pairs:
    target: {kind: "custom_target:row_pairs", size: 2}
    metric: l1
    sparsity: 0.5
    weights: [0.weight]
policies:
  - pruner: {instance_name: pairs}
    epochs: [0]
"""


class RowGroups(Target):
    """``size`` consecutive output rows of a 2-D weight form one group."""

    kind = "row_groups"
    output_channels = True

    def __init__(self, size: int = 2) -> None:
        self.size = size

    def check(self, unit: Unit, params) -> None:
        rows = params[unit.tensors[0]].size(0)
        if rows % self.size:
            raise TargetError(f"{unit.tensors[0]} has {rows} rows, not a multiple of {self.size}")

    def view(self, unit: Unit, tensors) -> torch.Tensor:
        weight = tensors[unit.tensors[0]]
        return weight.reshape(weight.size(0) // self.size, -1)

    def expand(self, unit: Unit, keep: torch.Tensor, params) -> dict[str, torch.Tensor]:
        weight = params[unit.tensors[0]]
        rows = keep.to(weight.dtype).repeat_interleave(self.size)
        return {unit.tensors[0]: rows[:, None].expand_as(weight).contiguous()}


def row_pairs(size: int = 2) -> Target:
    """The factory the schedule names."""
    return RowGroups(size)


def run() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    from prunecli.compression import build_scheduler
    from prunecli.schedule import load_schedule

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8))
    schedule = load_schedule("custom_target.yaml", text=SCHEDULE)
    scheduler = build_scheduler(schedule, model, torch.optim.SGD(model.parameters(), lr=0.1))
    scheduler.on_epoch_begin(0)
    return model, {n: m for n, m in scheduler.masks.items() if m is not None}


if __name__ == "__main__":
    _, masks = run()
    print("rows kept:", masks["0.weight"][:, 0].nonzero().flatten().tolist())
