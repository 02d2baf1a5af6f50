"""A two-convolution model with hand-countable MACs and a scripted generator for the iterative tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from prunecli.iterative.task import Budget, SearchSpace, Task, TaskGenerator, TaskResult


class TwoConv(nn.Module):
    """conv 1->10 and conv 10->10 (3x3, padding 1) on 8x8 inputs, global pooling, linear 10->10.

    MACs per sample: 64*10*1*9 = 5,760 + 64*10*10*9 = 57,600 + 10*10 = 100 -> 63,460.
    """

    input_shape = (1, 8, 8)  # what reports build the example input from

    def __init__(self, width: int = 10, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


EXAMPLE = torch.zeros(1, 1, 8, 8)


class ScriptedGoals(TaskGenerator):
    """A user-written generator: one task per listed goal (the budget's metric), in order, each
    pruning the dense model afresh."""

    name = "scripted"

    def __init__(self, goals: Sequence[float] = (0.5,)) -> None:
        self.goals = list(goals)
        self.metric = "weights"

    def _task(self, i: int) -> Task:
        return Task(index=i, levels={}, goal=Budget(self.metric, self.goals[i]), start_from="dense")

    def initial_tasks(self, space: SearchSpace) -> Sequence[Task]:
        if space.budget is not None:
            self.metric = space.budget.metric
        return [self._task(0)]

    def next_tasks(self, result: TaskResult) -> Sequence[Task]:
        i = result.task.index + 1
        return [self._task(i)] if i < len(self.goals) else []

    def state_dict(self) -> dict[str, Any]:
        return {"metric": self.metric}

    def load_state_dict(self, state: Any) -> None:
        self.metric = state.get("metric", self.metric)
