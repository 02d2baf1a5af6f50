"""Iterative pruning from Python, with your own training function: AGP steps to a MAC budget.

Run it with ``python examples/iterative_api.py``. It trains a small CNN on the 8x8 digits for two
epochs, then lets a :class:`prunecli.PruningScheduler` take it to at most 40 % of its MACs in three
AGP steps: each step prunes whole filters (L1 norm), removes them for real (thinning), fine-tunes
with the ``train`` function below and scores with ``accuracy``. The best result meeting the budget
is printed and returned.
"""

from __future__ import annotations

import torch
from torch import nn

from prunecli import LevelPruner, PruningScheduler, build_generator
from prunecli.data import load_dataset


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


def main(epochs: int = 3) -> dict:
    torch.manual_seed(0)
    data = load_dataset("digits")
    train_loader, val_loader, _ = data.loaders(64, workers=0, seed=0)

    def train(model: nn.Module, epochs: int = 1) -> None:
        """Your training loop: prunecli holds the pruned weights at zero while it runs."""
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        model.train()
        for _ in range(epochs):
            for images, labels in train_loader:
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(images), labels).backward()
                optimizer.step()

    def accuracy(model: nn.Module) -> float:
        """The score: top-1 on the validation split (higher is better)."""
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for images, labels in val_loader:
                correct += int((model(images).argmax(1) == labels).sum())
                total += len(labels)
        return correct / total

    model = SmallCNN()
    train(model, epochs)
    dense_top1 = accuracy(model)

    scheduler = PruningScheduler(
        LevelPruner(target="filters", metric="l1"),
        build_generator("agp"),
        finetuner=train,
        evaluator=accuracy,
        speedup=True,
        model=model,
        example_input=torch.zeros(1, 1, 8, 8),
        budget="macs <= 0.4",
        iterations=3,
    )
    scheduler.compress()
    for result in scheduler.results:
        print(
            f"iteration {result.task.index}: MACs {result.measured.macs:.3f} of dense, "
            f"top-1 {result.score:.3f}, meets budget: {result.meets_budget}"
        )
    best = scheduler.get_best_result()
    assert best is not None, "no iteration met the budget"
    task_id, pruned, masks, score, levels = best
    print(
        f"best: iteration {task_id}, top-1 {score:.3f} (dense {dense_top1:.3f}), conv2 keeps {pruned.conv2.out_channels} filters"
    )
    return {
        "dense_top1": dense_top1,
        "best": task_id,
        "score": score,
        "macs": best.result.measured.macs,
        "conv1": pruned.conv1.out_channels,
        "conv2": pruned.conv2.out_channels,
        "goals": [r.task.goal.value for r in scheduler.results],
    }


if __name__ == "__main__":
    main()
