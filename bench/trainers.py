"""One SGD training step, plain or driven by prunecli's compression-scheduler hooks."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def sgd(model: nn.Module, lr: float = 0.01) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)


class PlainStep:
    """forward, loss, backward, step: what every peer's masking runs inside."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.optimizer = model.train(), optimizer
        self.loss_fn = nn.CrossEntropyLoss()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


class ScheduledStep(PlainStep):
    """The same step with the six hooks called where Distiller's training loop calls them."""

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, steps_per_epoch: int
    ) -> None:
        super().__init__(model, optimizer)
        self.scheduler, self.steps_per_epoch = scheduler, steps_per_epoch
        self.epoch, self.step = 0, 0

    def begin_epoch(self, epoch: int) -> None:
        self.epoch, self.step = epoch, 0
        self.scheduler.on_epoch_begin(epoch)

    def end_epoch(self) -> None:
        self.scheduler.on_epoch_end(self.epoch, self.optimizer)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> float:
        s, e, n, opt = self.scheduler, self.epoch, self.steps_per_epoch, self.optimizer
        s.on_minibatch_begin(e, self.step, n, opt)
        loss = self.loss_fn(self.model(x), y)
        adjusted = s.before_backward_pass(e, self.step, n, loss, optimizer=opt)
        loss = loss if adjusted is None else adjusted
        opt.zero_grad(set_to_none=True)
        loss.backward()
        s.before_parameter_optimization(e, self.step, n, opt)
        opt.step()
        s.on_minibatch_end(e, self.step, n, opt)
        self.step += 1
        return float(loss.detach())
