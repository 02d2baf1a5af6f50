"""What a run trains and measures, per kind of data set: classification, language model, detection.

A :class:`Task` bundles the training step (an :class:`~prunecli.training.loop.Objective`), the
evaluation pass and the metrics it adds, so the application and the example sweep share one
definition of each. The task follows from the data set (:func:`task_for`): token corpora give a
language model (truncated back-propagation through time, perplexity), detection sets a detector
(the sum of the model's own losses), anything else classification (top-1/top-5).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunecli.training.loop import EvalStats, Objective, evaluate


@dataclass(frozen=True)
class Task:
    name: str
    objective: Callable[[], Objective]  # a fresh training objective
    # (model, loader, device, max_batches, **options): options are train_epoch's precision,
    # channels_last and reduce, which only classification uses
    evaluate: Callable[..., EvalStats]
    metrics: Callable[[EvalStats], dict[str, Any]]  # task-specific fields for metrics rows
    example_input: Callable[[Any, torch.device], Any]  # the data bundle -> one example input
    thinning_root: str = ""  # the sub-module that thinning traces and shrinks ("" = the model)


# ------------------------------------------------------------------------------ classification


def _classification_eval(
    model: nn.Module, loader: Any, device: torch.device, max_batches: int | None = None, **options: Any
) -> EvalStats:
    return evaluate(model, loader, nn.CrossEntropyLoss(), device, max_batches, **options)


CLASSIFICATION = Task(
    "classification",
    objective=lambda: Objective(nn.CrossEntropyLoss()),
    evaluate=_classification_eval,
    metrics=lambda stats: {},
    example_input=lambda bundle, device: torch.zeros(1, *bundle.input_shape, device=device),
)


# ------------------------------------------------------------------------------ language model

#: Distiller's word-language-model example clips the gradient norm at 0.25
LM_GRAD_CLIP = 0.25


def detach_hidden(hidden: Any) -> Any:
    """Cut the graph at a chunk boundary (truncated BPTT): same values, no history."""
    if hidden is None:
        return None
    if isinstance(hidden, torch.Tensor):
        return hidden.detach()
    return tuple(detach_hidden(h) for h in hidden)


def _token_loss(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, hidden: Any
) -> tuple[torch.Tensor, Any]:
    logits, hidden = model(inputs, hidden)
    loss = nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
    return loss, hidden


class LanguageModelObjective(Objective):
    """Chunks read in order; the hidden state is carried from chunk to chunk, detached (truncated
    BPTT), and the gradient norm clipped as in Distiller's example."""

    def __init__(self, clip: float = LM_GRAD_CLIP) -> None:
        self.clip = clip
        self.hidden: Any = None

    def begin(self, model: nn.Module) -> None:
        self.hidden = None  # a new pass over the stream starts from a zero state

    def loss(
        self, model: nn.Module, batch: Any, device: torch.device, channels_last: bool = False
    ) -> tuple[torch.Tensor, int]:
        inputs, targets = (t.to(device) for t in batch)
        loss, self.hidden = _token_loss(model, inputs, targets, detach_hidden(self.hidden))
        return loss, int(targets.numel())

    def after_backward(self, model: nn.Module) -> None:
        if self.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.clip)


@torch.no_grad()
def evaluate_language_model(
    model: nn.Module, loader: Any, device: torch.device, max_batches: int | None = None, **options: Any
) -> EvalStats:
    """Token-weighted mean cross-entropy over the stream (perplexity = exp of it) and next-token
    top-1/top-5 accuracy; the hidden state is carried across chunks, as in training. Runs in
    full precision on one process (``options`` of classification do not apply)."""
    was_training = model.training
    model.eval()
    total, correct1, correct5, tokens, hidden = 0.0, 0, 0, 0, None
    try:
        for index, (inputs, targets) in enumerate(loader):
            if max_batches is not None and index >= max_batches:
                break
            inputs, targets = inputs.to(device), targets.to(device)
            logits, hidden = model(inputs, hidden)
            flat, gold = logits.reshape(-1, logits.size(-1)), targets.reshape(-1)
            total += float(nn.functional.cross_entropy(flat, gold, reduction="sum"))
            top = flat.topk(min(5, flat.size(1)), dim=1).indices.eq(gold.view(-1, 1))
            correct1 += int(top[:, :1].sum())
            correct5 += int(top.any(dim=1).sum())
            tokens += int(gold.numel())
    finally:
        model.train(was_training)
    n = max(tokens, 1)
    return EvalStats(loss=total / n, top1=correct1 / n, top5=correct5 / n, samples=tokens)


def perplexity(loss: float) -> float:
    """exp(mean cross-entropy per token), infinite when it overflows."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


LANGUAGE_MODEL = Task(
    "language_model",
    objective=LanguageModelObjective,
    evaluate=evaluate_language_model,
    metrics=lambda stats: {"perplexity": perplexity(stats.loss)},
    example_input=lambda bundle, device: torch.zeros(1, 1, dtype=torch.long, device=device),
)


# ------------------------------------------------------------------------------ detection


def _detection_batch(
    batch: Any, device: torch.device
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    images, targets = batch
    return [i.to(device) for i in images], [{k: v.to(device) for k, v in t.items()} for t in targets]


class DetectionObjective(Objective):
    """torchvision detectors return their losses in training mode: the step minimises their sum."""

    def __init__(self) -> None:
        super().__init__(criterion=None)

    def loss(
        self, model: nn.Module, batch: Any, device: torch.device, channels_last: bool = False
    ) -> tuple[torch.Tensor, int]:
        images, targets = _detection_batch(batch, device)
        losses = model(images, targets)
        return sum(losses.values()), len(images)  # type: ignore[return-value]


_NORMS = (nn.modules.batchnorm._BatchNorm,)


@torch.no_grad()
def evaluate_detection(
    model: nn.Module, loader: Any, device: torch.device, max_batches: int | None = None, **options: Any
) -> EvalStats:
    """Mean summed detection loss per image; no accuracy (``top1``/``top5`` are None).

    The losses exist only in training mode, so the model runs in it; BatchNorm normalises with
    the batch's statistics as in training (running statistics of a young model are far off),
    with momentum 0 so the running statistics stay as they were."""
    was_training = model.training
    model.train()
    norms = [m for m in model.modules() if isinstance(m, _NORMS)]
    saved = [
        (m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms
    ]
    for m in norms:
        m.momentum = 0.0
    total, images_seen = 0.0, 0
    try:
        for index, batch in enumerate(loader):
            if max_batches is not None and index >= max_batches:
                break
            images, targets = _detection_batch(batch, device)
            total += float(sum(model(images, targets).values())) * len(images)
            images_seen += len(images)
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)
        model.train(was_training)
    return EvalStats(loss=total / max(images_seen, 1), top1=None, top5=None, samples=images_seen)


DETECTION = Task(
    "detection",
    objective=DetectionObjective,
    evaluate=evaluate_detection,
    metrics=lambda stats: {"detection_loss": stats.loss},
    example_input=lambda bundle, device: torch.zeros(1, *bundle.input_shape, device=device),
    # a detector as a whole does not trace (its forward loops over images and boxes); its
    # backbone (ResNet stages and FPN) does: the bottlenecks and the FPN's top-down channels thin,
    # the FPN's outputs (read by the heads, outside the traced part) keep their width
    thinning_root="backbone",
)


def task_for(bundle: Any) -> Task:
    """The task a data bundle calls for (its ``task`` attribute; classification when absent)."""
    return TASKS[getattr(bundle, "task", "classification")]


TASKS: dict[str, Task] = {t.name: t for t in (CLASSIFICATION, LANGUAGE_MODEL, DETECTION)}
