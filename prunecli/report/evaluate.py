"""Top-1 / top-5 / cross-entropy of a classifier on a data set split, for reports and sensitivity."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


@dataclass
class EvalResult:
    top1: float  # fraction 0..1
    top5: float  # fraction 0..1 (equals 1.0 when there are at most 5 classes)
    loss: float  # mean cross-entropy per sample
    samples: int

    def as_dict(self) -> dict:
        return asdict(self)


def eval_loader(dataset: Dataset, batch_size: int = 256) -> DataLoader:
    """A deterministic, unshuffled loader so repeated evaluations see the same batches."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: str | torch.device = "cpu",
    max_batches: int | None = None,
) -> EvalResult:
    was_training = model.training
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    correct1 = correct5 = seen = 0
    total_loss = 0.0
    try:
        with torch.no_grad():
            for i, (x, y) in enumerate(loader):
                if max_batches is not None and i >= max_batches:
                    break
                x, y = x.to(device), y.to(device)
                logits = model(x)
                total_loss += float(loss_fn(logits, y))
                k = min(5, logits.shape[1])
                top = logits.topk(k, dim=1).indices
                hits = top.eq(y.unsqueeze(1))
                correct1 += int(hits[:, 0].sum())
                correct5 += int(hits.any(dim=1).sum())
                seen += y.numel()
    finally:
        model.train(was_training)
    if seen == 0:
        return EvalResult(top1=0.0, top5=0.0, loss=float("nan"), samples=0)
    return EvalResult(top1=correct1 / seen, top5=correct5 / seen, loss=total_loss / seen, samples=seen)
