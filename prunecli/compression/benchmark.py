"""Overhead of the scheduler hooks on a training step: ``python -m prunecli.compression.benchmark``.

Times a plain SGD step of a model against the same step wrapped in the six hooks with every
convolution masked (a SparsityLevelParameterPruner at 50%), and prints the ratio.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from prunecli.compression.build import build_scheduler
from prunecli.schedule.model import Component, Policy, Schedule


def _schedule(conv_names: list[str]) -> Schedule:
    pruner = Component(
        "pruners", "all_convs", "SparsityLevelParameterPruner", {"levels": dict.fromkeys(conv_names, 0.5)}
    )
    policy = Policy("pruner", "all_convs", {}, (0,), 0, 1, None, 0)
    return Schedule(None, "", 1, {"pruners": {"all_convs": pruner}}, [policy])


def _time(step, iters: int, device: torch.device) -> float:
    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def measure(model: nn.Module, batch: torch.Tensor, labels: torch.Tensor, iters: int = 20) -> dict[str, float]:
    """Seconds per plain step, per hooked step in a pruning epoch, and in an epoch without policies."""
    device = batch.device
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    convs = [n for n, p in model.named_parameters() if p.dim() == 4]

    def plain() -> None:
        loss = criterion(model(batch), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    scheduler = build_scheduler(_schedule(convs), model, optimizer)
    scheduler.on_epoch_begin(0)

    def hooked(epoch: int) -> None:
        scheduler.on_minibatch_begin(epoch, 1, 100, optimizer)
        loss = criterion(model(batch), labels)
        loss = scheduler.before_backward_pass(epoch, 1, 100, loss, optimizer)
        optimizer.zero_grad()
        loss.backward()
        scheduler.before_parameter_optimization(epoch, 1, 100, optimizer)
        optimizer.step()
        scheduler.on_minibatch_end(epoch, 1, 100, optimizer)

    # interleave to spread machine noise evenly
    plain_t, prune_t, after_t = [], [], []
    for _ in range(3):
        plain_t.append(_time(plain, iters, device))
        prune_t.append(_time(lambda: hooked(0), iters, device))
        after_t.append(_time(lambda: hooked(1), iters, device))
    return {
        "plain_s": min(plain_t),
        "pruning_epoch_s": min(prune_t),
        "later_epoch_s": min(after_t),
        "masked_tensors": len(convs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="resnet56_cifar")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    from prunecli.models import create_model

    device = torch.device(args.device)
    model, _ = create_model(args.model, dataset="cifar10")
    model.to(device).train()
    batch = torch.randn(args.batch_size, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (args.batch_size,), device=device)
    result = measure(model, batch, labels, args.iters)
    plain = result["plain_s"]
    print(f"{args.model} batch {args.batch_size} on {device}: {result['masked_tensors']} masked tensors")
    print(f"plain step        {plain * 1e3:8.2f} ms")
    print(
        f"pruning epoch     {result['pruning_epoch_s'] * 1e3:8.2f} ms  ({result['pruning_epoch_s'] / plain:.3f}x)"
    )
    print(
        f"epoch w/o policy  {result['later_epoch_s'] * 1e3:8.2f} ms  ({result['later_epoch_s'] / plain:.3f}x)"
    )


if __name__ == "__main__":
    main()
