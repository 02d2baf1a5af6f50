"""Benchmark 7: accuracy of a small torchvision ViT on digits, embedding and heads pruned, vs Torch-Pruning."""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bench import ours
from bench.accuracy import BATCH, LR, top1
from bench.context import Context
from bench.peers import tp_side
from bench.results import NOT_INSTALLED, Section, Table, Target, Unavailable, count, progress, short_error
from bench.trainers import PlainStep, sgd

DATASET = "digits"
DENSE, TP = "dense", "Torch-Pruning"
OURS = "prunecli, narrowed heads"
WHOLE = "prunecli, whole heads"
EXACT = "prunecli, exact (LayerNorm channels kept)"
HALF = "prunecli, half the MACs (narrowed heads + MLPs)"
#: fraction of every group each tool removes. MACs as ``total_macs`` counts them, attention included
#: (dense 317.9 k). Torch-Pruning (1.6.1) keeps the embedding, the attention and its 4 heads of 8 here
#: whatever its head options (``prune_num_heads``, ``prune_head_dims``, ``head_pruning_ratio``) and only
#: narrows the MLPs, so 55 % of the MACs are out of its reach: 0.9 -> 60.3 %, the nearest it gets to
#: half. prunecli's exact thinning at 0.91 keeps exactly its widths (MLPs 64 -> 6, the same MACs);
#: narrowed / whole heads at 0.25 keep 58.6 %, the nearest uniform fraction at or below 60.3 %.
FRACTIONS = {OURS: 0.25, WHOLE: 0.25, EXACT: 0.91, TP: 0.9}
METHODS = (DENSE, OURS, WHOLE, EXACT, HALF, TP)
#: the half-MACs row narrows every head by this many of its 8 positions (the least that can still reach
#: half: the embedding/head group is tied to the LayerNorms, so this row prunes them too) ...
HALF_HEAD_POSITIONS = 1
#: ... and removes from each MLP the fewest of its 64 hidden channels that bring the true MACs to <= half
HALF_SHARE = 0.5


def small_vit(seed: int) -> nn.Module:
    """torchvision's VisionTransformer for 1x8x8 digits: 2x2 patches, 2 layers, 4 heads of 8."""
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    model = VisionTransformer(
        image_size=8, patch_size=2, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=10
    )
    model.conv_proj = nn.Conv2d(1, 32, kernel_size=2, stride=2)  # one input channel
    return model


def _group_fractions(head_positions: int, mlp_channels: int) -> Callable[[Any], float]:
    """Per-group fraction: the normalised embedding/head-position group (8) loses ``head_positions``,
    every MLP hidden group (64) loses ``mlp_channels``."""
    return lambda group: head_positions / group.size if group.normalized else mlp_channels / group.size


def _thin_half(model: nn.Module, x: torch.Tensor, mlp_channels: int) -> None:
    ours.prune_every_group_and_thin(
        model,
        x,
        _group_fractions(HALF_HEAD_POSITIONS, mlp_channels),
        prune_normalized=True,
        verify=False,
        narrow_heads=True,
    )


@functools.cache
def half_mlp_channels() -> int:
    """Bisect the MLP channels removed so that the thinned model's true MACs (``total_macs``, attention
    included) are as close as possible to, and not above, ``HALF_SHARE`` of the dense model's; decided on
    the shapes alone, before any training (the count does not depend on which channels go)."""
    from prunecli.report.compute import total_macs

    x = torch.zeros(1, 1, 8, 8)
    limit = HALF_SHARE * total_macs(small_vit(0), x)

    def macs(channels: int) -> int:
        model = small_vit(0).eval()
        _thin_half(model, x, channels)
        return total_macs(model, x)

    low, high = 0, 63  # MACs fall as channels go; find the fewest removed with MACs <= limit
    if macs(high) > limit:
        raise ValueError(f"{HALF_HEAD_POSITIONS} head position(s) and 63 MLP channels stay above half the MACs")
    while low < high:
        middle = (low + high) // 2
        if macs(middle) <= limit:
            high = middle
        else:
            low = middle + 1
    return low


def _prune(name: str, model: nn.Module, x: torch.Tensor) -> None:
    model.eval()
    if name == HALF:
        _thin_half(model, x, half_mlp_channels())
    elif name in (OURS, WHOLE, EXACT):
        ours.prune_every_group_and_thin(
            model, x, FRACTIONS[name], prune_normalized=name != EXACT, verify=False, narrow_heads=name == OURS
        )
    elif name == TP:
        tp_side.prune_vit(model, x, FRACTIONS[TP])


def train_one(name: str, seed: int, bundle, pretrain: int, finetune: int, max_steps: int | None):
    from prunecli.report.compute import total_macs

    model = small_vit(seed)
    x = torch.zeros(1, *bundle.input_shape)
    train_loader, _, test_loader = bundle.loaders(BATCH, 0, seed)
    step = PlainStep(model, sgd(model, LR))
    for epoch in range(pretrain + finetune):
        if epoch == pretrain and name != DENSE:
            _prune(name, model, x)
            step = PlainStep(model, sgd(model, LR))  # shapes changed: a new optimizer for both tools
        lr = LR * (0.3 if epoch >= pretrain else 1.0)
        for group in step.optimizer.param_groups:
            group["lr"] = lr
        model.train()
        for index, (inputs, targets) in enumerate(train_loader):
            if max_steps is not None and index >= max_steps:
                break
            step(inputs, targets)
    return top1(model, test_loader), total_macs(model, x), total_macs(small_vit(seed), x)


def run(context: Context) -> Section:
    settings = context.settings
    pretrain, finetune = (
        settings.acc_pretrain_epochs + settings.acc_prune_epochs,
        settings.acc_finetune_epochs,
    )
    section = Section(
        "vit_accuracy",
        "Accuracy of a small ViT on digits",
        f"torchvision `VisionTransformer` (8x8 images, 2x2 patches, 2 layers, 4 heads, width 32, MLP 64, a "
        f"1-channel patch embedding) on the scikit-learn digits, SGD momentum 0.9, batch {BATCH}, lr {LR}; "
        f"{pretrain} dense epochs, then MACs removed once and {finetune} "
        "fine-tuning epochs at 0.3x the learning rate, the optimizer rebuilt after pruning"
        + (f" (at most {settings.acc_max_steps} steps per epoch)" if settings.acc_max_steps else "")
        + f". Seeds {', '.join(map(str, settings.acc_seeds))}. prunecli: {FRACTIONS[OURS]:.0%} of every group, "
        "ranked by the L1 norms of its producers, `prune_normalized=True` (embedding width goes; LayerNorm "
        "statistics change), `thin_model`; with `narrow_heads=True` every head loses the same positions (4 "
        "heads of 6, embedding 24), without it whole heads go (3 heads of 8); exact (LayerNorm channels kept): "
        f"{FRACTIONS[EXACT]:.0%} of every group it can thin exactly, which here are the MLPs' hidden widths. "
        f"Half the MACs: narrowed heads with {HALF_HEAD_POSITIONS} of the 8 positions of every head removed "
        "(4 heads of 7, embedding 28; the attention width is tied to the embedding and so to the LayerNorms in "
        "torch's `MultiheadAttention`, so LayerNorm channels go too) and the fewest MLP hidden channels that "
        f"bring the true MACs to at most {HALF_SHARE:.0%} of the dense model's, found by bisection on the "
        "thinned shapes before training. "
        "Torch-Pruning: `BasePruner` + "
        f"`MagnitudeImportance(p=1)`, `pruning_ratio={FRACTIONS[TP]}`, `num_heads` declared, classifier "
        "ignored, `hidden_dim` set afterwards as its ViT example does; on this model it keeps the embedding "
        "and the attention whole (with or without `prune_num_heads`/`prune_head_dims`) and narrows only the "
        "MLPs, so it cannot reach half the MACs: 0.9 is the nearest. MACs as `prunecli.report.compute` "
        "counts them, attention projections and products included. Top-1 on the test split after the last "
        "epoch.",
    )
    table = Table(
        "Test top-1 after the same budget",
        ["method", "top-1 mean", "per seed", "MACs after", "share of dense MACs"],
    )
    section.tables.append(table)
    try:
        from prunecli.data import load_dataset

        bundle = load_dataset(DATASET, seed=0)
    except (ImportError, Unavailable) as exc:
        table.add("all", str(exc), "", "", "")
        return section
    means: dict[str, float] = {}
    for name in METHODS:
        if name == TP and not tp_side.version():
            table.add(name, NOT_INSTALLED, "", "", "")
            continue
        scores, macs, full = [], 0, 1
        try:
            for seed in settings.acc_seeds:
                progress(f"vit accuracy {name}, seed {seed}")
                score, macs, full = train_one(name, seed, bundle, pretrain, finetune, settings.acc_max_steps)
                scores.append(score)
        except Exception as exc:  # a method failing is a result to report
            table.add(name, f"failed: {short_error(exc)}", "", "", "")
            continue
        means[name] = 100 * statistics.mean(scores)
        table.add(
            name,
            f"{means[name]:.2f} %",
            ", ".join(f"{100 * s:.2f}" for s in scores),
            count(macs),
            f"{macs / full:.1%}",
        )
    _targets(section, means)
    return section


def _targets(section: Section, means: dict[str, float]) -> None:
    """The issue's goal at half the MACs, which Torch-Pruning cannot reach here (it is compared where it
    gets nearest, with more MACs); and at the same MACs: prunecli's exact thinning keeps exactly
    Torch-Pruning's widths (equal MACs); the narrowed heads keep slightly fewer (58.6 % against 60.3 %)."""
    for name, goal, note in (
        (
            HALF,
            f"prunecli at <= {HALF_SHARE:.0%} of the true MACs >= Torch-Pruning (60.3 %, the nearest it reaches)",
            "prunecli removes LayerNorm channels (embedding) to get there, which Torch-Pruning never does",
        ),
        (EXACT, "prunecli (same widths and MACs as Torch-Pruning) >= Torch-Pruning", ""),
        (
            OURS,
            "prunecli, narrowed heads (58.6 % of the MACs; Torch-Pruning 60.3 %) >= Torch-Pruning",
            "Torch-Pruning cannot reach half the MACs on this model (it keeps the attention), so no equal-MAC "
            "point below 60 %",
        ),
    ):
        if name in means and TP in means:
            met = means[name] >= means[TP]
            measured = f"{means[name]:.2f} % vs {means[TP]:.2f} %"
            section.targets.append(Target(goal, measured, met, "" if met else note))
        else:
            section.targets.append(Target(goal, "not both measured", None))
