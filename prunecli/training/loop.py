"""One training epoch and one evaluation pass, calling the compression hooks in Distiller's order.

Per epoch: ``on_epoch_begin``; per minibatch ``on_minibatch_begin``, forward, loss,
``before_backward_pass`` (its returned loss is the one differentiated), ``zero_grad``, ``backward``,
``before_parameter_optimization``, ``optimizer.step``, ``on_minibatch_end``; then validation and
``on_epoch_end(epoch, optimizer, metrics={'min': val_loss, 'max': top1})`` (called by the app).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from prunecli.checkpoint.testhooks import pause_point
from prunecli.errors import TrainingDiverged

from .precision import Precision

#: this process's rank under torchrun, for the per-rank test pause point
_RANK = os.environ.get("RANK", "0")

StepCallback = Callable[[int, float], None]
#: sums of this process -> sums over every process of the job (the identity for one process)
Reduce = Callable[[list[float]], list[float]]


def _identity(values: list[float]) -> list[float]:
    return values


def _to_device(tensor: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    tensor = tensor.to(device, non_blocking=True)
    if channels_last and tensor.dim() == 4:
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    return tensor


@dataclass
class TrainStats:
    loss: float
    samples: int
    steps: int


@dataclass
class EvalStats:
    loss: float
    top1: float | None  # None for tasks without accuracy (detection)
    top5: float | None
    samples: int


class Objective:
    """What one training step computes: classification's ``criterion(model(x), y)`` by default.

    Tasks whose batches or models differ (a language model's hidden state, a detector's list
    of targets) subclass it; :func:`train_epoch` keeps the hook order and divergence checks.
    """

    def __init__(self, criterion: nn.Module | None) -> None:
        self.criterion = criterion

    def begin(self, model: nn.Module) -> None:
        """Called before the first batch of a pass."""

    def loss(
        self, model: nn.Module, batch: Any, device: torch.device, channels_last: bool = False
    ) -> tuple[torch.Tensor, int]:
        """(loss of the batch, how many samples it averages over); runs under the precision's autocast."""
        if self.criterion is None:
            raise NotImplementedError("an objective without a criterion must define loss()")
        inputs, targets = batch
        inputs, targets = _to_device(inputs, device, channels_last), targets.to(device)
        return self.criterion(model(inputs).float(), targets), int(inputs.shape[0])

    def after_backward(self, model: nn.Module) -> None:
        """Called between ``backward`` and the pre-optimizer hook (gradient clipping goes here)."""


class NoCompression:
    """Hooks that do nothing: a run without a schedule is plain training."""

    masks: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith(("on_", "before_")):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


def steps_in_epoch(loader: DataLoader, max_steps: int | None) -> int:
    steps = len(loader)
    return min(steps, max_steps) if max_steps else steps


def _overall_loss(result: Any, fallback: torch.Tensor) -> torch.Tensor:
    """``before_backward_pass`` may return a tensor, a PolicyLoss-like object, or nothing."""
    if result is None:
        return fallback
    if isinstance(result, torch.Tensor):
        return result
    overall = getattr(result, "overall_loss", None)
    return overall if isinstance(overall, torch.Tensor) else fallback


def _first_non_finite(model: nn.Module) -> str | None:
    """Name of the first parameter holding a NaN or an infinity, if any.

    One sum per parameter (NaN and infinities propagate through a sum; healthy weights are many
    orders of magnitude too small to overflow it, and half-precision ones are summed in float32)
    and a single host sync per step; the names are scanned only when something is wrong.
    """
    sums: dict[torch.device, list[torch.Tensor]] = {}
    for p in model.parameters():
        if p.numel():
            wide = torch.float32 if p.dtype in (torch.float16, torch.bfloat16) else None
            sums.setdefault(p.device, []).append(p.detach().sum(dtype=wide))
    if all(bool(torch.isfinite(torch.stack(v)).all()) for v in sums.values()):
        return None
    return next((n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())), None)


def train_epoch(
    model: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    epoch: int,
    steps_per_epoch: int,
    device: torch.device,
    on_step: StepCallback | None = None,
    *,
    objective: Objective | None = None,
    precision: Precision | None = None,
    channels_last: bool = False,
    reduce: Reduce = _identity,
) -> TrainStats:
    """Train for ``steps_per_epoch`` minibatches; raise TrainingDiverged on non-finite loss or weights.

    ``model`` may be a DDP replica (see ``distributed.Replica``): its call averages gradients
    over the processes. ``reduce`` sums the loss statistics over processes. ``objective`` is
    what a step computes (classification's ``criterion`` by default).
    """
    precision = precision or Precision(None, device)
    objective = objective or Objective(criterion)
    model.train()
    objective.begin(model)
    total_loss, samples, step = 0.0, 0, 0
    for step, batch in enumerate(loader):
        if step >= steps_per_epoch:
            break
        scheduler.on_minibatch_begin(epoch, step, steps_per_epoch, optimizer)
        pause_point(f"train_step_rank{_RANK}")
        with precision.autocast():
            loss, size = objective.loss(model, batch, device, channels_last)
        loss = _overall_loss(
            scheduler.before_backward_pass(
                epoch, step, steps_per_epoch, loss, optimizer=optimizer, return_loss_components=True
            ),
            loss,
        )
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"the loss became {value} at epoch {epoch}, step {step}",
                hint="lower the learning rate (--lr) or the regularization strength; "
                "checkpoint.pt still holds the last good epoch",
            )
        optimizer.zero_grad()
        precision.backward(loss)
        precision.unscale(optimizer)
        objective.after_backward(model)  # after unscaling, so clipping sees the true gradients
        scheduler.before_parameter_optimization(epoch, step, steps_per_epoch, optimizer)
        precision.step(optimizer)  # a step the fp16 scaler skips changes no weight
        # masks are re-applied whether or not the step happened
        scheduler.on_minibatch_end(epoch, step, steps_per_epoch, optimizer)
        bad = _first_non_finite(model)
        if bad is not None:
            raise TrainingDiverged(
                f"parameter '{bad}' became non-finite at epoch {epoch}, step {step}",
                hint="lower the learning rate (--lr); checkpoint.pt still holds the last good epoch",
            )
        total_loss += value * size
        samples += size
        if on_step is not None:
            on_step(step, value)
    total_loss, total_samples = reduce([total_loss, float(samples)])
    return TrainStats(
        loss=total_loss / max(total_samples, 1),
        samples=int(total_samples),
        steps=min(step + 1, steps_per_epoch),
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    device: torch.device,
    max_batches: int | None = None,
    *,
    precision: Precision | None = None,
    channels_last: bool = False,
    reduce: Reduce = _identity,
) -> EvalStats:
    """Mean loss and top-1/top-5 accuracy as fractions in [0, 1].

    With several processes each evaluates its own share of the set and ``reduce`` sums the
    counts, so every sample is counted exactly once.
    """
    precision = precision or Precision(None, device)
    was_training = model.training
    model.eval()
    total_loss, correct1, correct5, samples = 0.0, 0, 0, 0
    try:
        for index, (inputs, targets) in enumerate(loader):
            if max_batches is not None and index >= max_batches:
                break
            inputs, targets = _to_device(inputs, device, channels_last), targets.to(device)
            with precision.autocast():
                output = model(inputs).float()
            total_loss += float(criterion(output, targets)) * inputs.shape[0]
            k = min(5, output.shape[1])
            top = output.topk(k, dim=1).indices
            hits = top.eq(targets.view(-1, 1))
            correct1 += int(hits[:, :1].sum())
            correct5 += int(hits.any(dim=1).sum())
            samples += inputs.shape[0]
    finally:
        model.train(was_training)
    total_loss, hits1, hits5, count = reduce([total_loss, float(correct1), float(correct5), float(samples)])
    n = max(count, 1)
    return EvalStats(loss=total_loss / n, top1=hits1 / n, top5=hits5 / n, samples=int(count))
