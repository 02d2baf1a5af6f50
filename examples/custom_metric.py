"""A user metric for the pruning engine, named in the schedule as ``custom_metric:weight_spread``.

A metric is any function of the grouped weights (one row per group: a filter, a block, a head)
returning one score per group; higher scores are kept. This one keeps the filters whose weights
vary the most.

    python examples/custom_metric.py
"""

from __future__ import annotations

import torch
from torch import nn

SCHEDULE = """
version: 1
pruners:
  spread:
    target: filters
    metric: custom_metric:weight_spread
    sparsity: 0.5
    weights: [0.weight]
policies:
  - pruner: {instance_name: spread}
    epochs: [0]
"""


def weight_spread(rows: torch.Tensor) -> torch.Tensor:
    """Standard deviation of each group's weights."""
    return rows.std(dim=1)


def run() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Prune a small convolution with the metric; returns the model and its masks."""
    from prunecli.compression import build_scheduler
    from prunecli.schedule import load_schedule

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 3, 6, 6))
    schedule = load_schedule("custom_metric.yaml", text=SCHEDULE)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = build_scheduler(schedule, model, optimizer, example_input=torch.zeros(1, 3, 6, 6))
    scheduler.on_epoch_begin(0)
    return model, {n: m for n, m in scheduler.masks.items() if m is not None}


if __name__ == "__main__":
    _, masks = run()
    kept = masks["0.weight"].reshape(8, -1).amax(dim=1)
    print("filters kept by weight spread:", kept.nonzero().flatten().tolist())
