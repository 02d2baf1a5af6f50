"""The plain PyTorch script a user would write instead of ``prunecli run``: the baseline of benchmark 4.

Same model and data-set definitions (borrowed from prunecli so the work is identical), same epochs,
SGD, LR milestones, per-epoch validation and checkpoint, and fixed masks re-applied after every
optimizer step. Nothing else: no schedule, no hooks, no report, no compact checkpoint.

    python -m bench.plain_train --model resnet20_cifar --dataset fake --epochs 3 \\
        --mask-all-convs 0.5 --out /tmp/plain
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.plain_train", description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--dataset-option", action="append", default=[], metavar="KEY=INT")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--milestones", default="", help="comma-separated epochs for MultiStepLR")
    p.add_argument("--gamma", type=float, default=0.1)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mask", action="append", default=[], metavar="PARAM=LEVEL[:filters]")
    p.add_argument("--mask-all-convs", type=float, help="element-wise level for every conv weight")
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def magnitude_mask(weight: torch.Tensor, level: float, filters: bool) -> torch.Tensor:
    """Keep the largest ``1 - level`` of the elements (or of the filters, by L1 norm)."""
    scores = weight.detach().abs()
    if filters:
        scores = scores.flatten(1).sum(1)
    k = int(level * scores.numel())
    if k == 0:
        return torch.ones_like(weight)
    keep = (scores > scores.flatten().kthvalue(k).values).to(weight.dtype)
    return keep.view(-1, *([1] * (weight.dim() - 1))).expand_as(weight).clone() if filters else keep


def build_masks(model: nn.Module, args: argparse.Namespace) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    specs: dict[str, tuple[float, bool]] = {}
    if args.mask_all_convs is not None:
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d):
                specs[f"{name}.weight"] = (args.mask_all_convs, False)
    for item in args.mask:
        name, _, spec = item.partition("=")
        level, _, kind = spec.partition(":")
        specs[name] = (float(level), kind == "filters")
    return {name: magnitude_mask(params[name], level, filters) for name, (level, filters) in specs.items()}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask)


@torch.no_grad()
def evaluate(model: nn.Module, loader) -> dict[str, float]:
    model.eval()
    loss = correct = total = 0.0
    for x, y in loader:
        out = model(x)
        loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
        total += len(y)
    return {"loss": loss / max(total, 1), "top1": correct / max(total, 1)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from prunecli.data import load_dataset
    from prunecli.models import create_model

    torch.manual_seed(args.seed)
    model, _ = create_model(args.model, dataset=args.dataset)
    options = {k: int(v) for k, _, v in (o.partition("=") for o in args.dataset_option)}
    bundle = load_dataset(args.dataset, seed=args.seed, val_fraction=args.val_fraction, **options)
    train, val, test = bundle.loaders(args.batch_size, 0, args.seed)
    val = val if len(bundle.val) else test
    optimizer = torch.optim.SGD(
        model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay
    )
    milestones = [int(m) for m in args.milestones.split(",") if m]
    lr_schedule = (
        torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, args.gamma) if milestones else None
    )
    masks = build_masks(model, args)
    apply_masks(model, masks)
    args.out.mkdir(parents=True, exist_ok=True)
    for epoch in range(args.epochs):
        start = time.perf_counter()
        model.train()
        for x, y in train:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            apply_masks(model, masks)
        metrics = {"epoch": epoch, **evaluate(model, val), "time_s": time.perf_counter() - start}
        if lr_schedule is not None:
            lr_schedule.step()
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}
        torch.save(state, args.out / "checkpoint.pt")
        print(json.dumps(metrics), flush=True)
    print(json.dumps({"test": evaluate(model, test)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
