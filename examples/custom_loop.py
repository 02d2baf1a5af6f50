"""Prune a tiny CNN from your own training loop with a Distiller schedule, then thin it.

Run it with ``python examples/custom_loop.py``: it trains on random data for a few
epochs under an AGP filter-pruning schedule, prints each epoch's sparsity, and finally
makes a thinned copy with the pruned filters removed for real (``export_compact``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from prunecli.api import build_compression, export_compact

SCHEDULE = """
version: 1
pruners:
  filter_pruner:
    class: L1RankedStructureParameterPruner_AGP
    initial_sparsity: 0.10
    final_sparsity: 0.50
    group_type: Filters
    weights: [features.3.weight]
  fine_pruner:
    class: AutomatedGradualPruner
    initial_sparsity: 0.05
    final_sparsity: 0.70
    weights: [classifier.weight]
lr_schedulers:
  lr:
    class: StepLR
    step_size: 2
    gamma: 0.5
policies:
  - pruner:
      instance_name: filter_pruner
    starting_epoch: 0
    ending_epoch: 4
    frequency: 1
  - pruner:
      instance_name: fine_pruner
    starting_epoch: 0
    ending_epoch: 4
    frequency: 1
  - lr_scheduler:
      instance_name: lr
    starting_epoch: 0
    ending_epoch: 6
    frequency: 1
"""


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def main(epochs: int = 5, steps_per_epoch: int = 3) -> dict[str, float]:
    torch.manual_seed(0)
    model = TinyCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    criterion = nn.CrossEntropyLoss()
    data = [(torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))) for _ in range(steps_per_epoch)]
    example_input = data[0][0][:1]

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "schedule.yaml"
        path.write_text(SCHEDULE)
        # auto_dependency: a pruned filter's bias goes with it, so thinning can remove the filter
        scheduler = build_compression(
            path, model, optimizer, example_input=example_input, auto_dependency=True
        )

    for epoch in range(epochs):
        scheduler.on_epoch_begin(epoch)
        for step, (x, y) in enumerate(data):
            scheduler.on_minibatch_begin(epoch, step, steps_per_epoch, optimizer)
            loss = criterion(model(x), y)
            loss = scheduler.before_backward_pass(epoch, step, steps_per_epoch, loss, optimizer=optimizer)
            optimizer.zero_grad()
            loss.backward()
            scheduler.before_parameter_optimization(epoch, step, steps_per_epoch, optimizer)
            optimizer.step()
            scheduler.on_minibatch_end(epoch, step, steps_per_epoch, optimizer)
        scheduler.on_epoch_end(epoch, optimizer, metrics={"min": loss.item(), "max": 0.0})
        conv = model.features[3].weight
        dead = int((conv.reshape(conv.size(0), -1).abs().sum(dim=1) == 0).sum())
        fc_sparsity = float((model.classifier.weight == 0).float().mean())
        print(f"epoch {epoch}: conv filters pruned {dead}/16, classifier sparsity {fc_sparsity:.2f}")

    # a thinned copy: the zeroed filters of features.3 and the classifier inputs that read them go
    # for real, and the copy is checked to compute what the masked model computes
    compact = export_compact(model, scheduler, example_input)
    params_before = sum(p.numel() for p in model.parameters())
    params_after = sum(p.numel() for p in compact.model.parameters())
    print(
        f"thinned: {params_before:,} -> {params_after:,} parameters; features.3 is now {compact.model.features[3]}"
    )

    return {
        "dead_filters": dead,
        "fc_sparsity": fc_sparsity,
        "lr": optimizer.param_groups[0]["lr"],
        "params_before": params_before,
        "params_after": params_after,
    }


if __name__ == "__main__":
    main()
