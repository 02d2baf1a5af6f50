"""Benchmark 7: accuracy of a small torchvision ViT on digits, embedding and heads pruned, vs Torch-Pruning."""

from __future__ import annotations

import statistics

import torch
from torch import nn

from bench import ours
from bench.accuracy import BATCH, LR, top1
from bench.context import Context
from bench.peers import tp_side
from bench.results import NOT_INSTALLED, Section, Table, Target, Unavailable, count, progress, short_error
from bench.trainers import PlainStep, sgd

DATASET = "digits"
DENSE, OURS, TP = "dense", "prunecli, LayerNorm channels pruned", "Torch-Pruning"
#: fraction of every group each tool removes so that both keep about half the MACs (measured: prunecli
#: 0.3 -> 53 %, whole heads; Torch-Pruning 0.5 -> 51 %, it keeps 4 heads of narrower width)
FRACTIONS = {OURS: 0.3, TP: 0.5}


def small_vit(seed: int) -> nn.Module:
    """torchvision's VisionTransformer for 1x8x8 digits: 2x2 patches, 2 layers, 4 heads of 8."""
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    model = VisionTransformer(
        image_size=8, patch_size=2, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=10
    )
    model.conv_proj = nn.Conv2d(1, 32, kernel_size=2, stride=2)  # one input channel
    return model


def _prune(name: str, model: nn.Module, x: torch.Tensor) -> None:
    model.eval()
    if name == OURS:
        ours.prune_every_group_and_thin(model, x, FRACTIONS[OURS], prune_normalized=True, verify=False)
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
    return top1(model, test_loader), total_macs(model, x)


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
        f"{pretrain} dense epochs, then about half the MACs removed once and {finetune} "
        "fine-tuning epochs at 0.3x the learning rate, the optimizer rebuilt after pruning"
        + (f" (at most {settings.acc_max_steps} steps per epoch)" if settings.acc_max_steps else "")
        + f". Seeds {', '.join(map(str, settings.acc_seeds))}. prunecli: {FRACTIONS[OURS]:.0%} of every group, "
        "ranked by the L1 norms of its producers, `prune_normalized=True` (embedding width and whole heads go; "
        "LayerNorm statistics change), `thin_model`. Torch-Pruning: `BasePruner` + `MagnitudeImportance(p=1)`, "
        f"`pruning_ratio={FRACTIONS[TP]}`, `num_heads` declared, classifier ignored, `hidden_dim` set afterwards "
        "as its ViT example does. The ratios differ so that both keep about half the MACs (column). Top-1 on "
        "the test split after the last epoch.",
    )
    table = Table("Test top-1 after the same budget", ["method", "top-1 mean", "per seed", "MACs after"])
    section.tables.append(table)
    try:
        from prunecli.data import load_dataset

        bundle = load_dataset(DATASET, seed=0)
    except (ImportError, Unavailable) as exc:
        table.add("all", str(exc), "", "")
        return section
    means: dict[str, float] = {}
    for name in (DENSE, OURS, TP):
        if name == TP and not tp_side.version():
            table.add(name, NOT_INSTALLED, "", "")
            continue
        scores, macs = [], 0
        try:
            for seed in settings.acc_seeds:
                progress(f"vit accuracy {name}, seed {seed}")
                score, macs = train_one(name, seed, bundle, pretrain, finetune, settings.acc_max_steps)
                scores.append(score)
        except Exception as exc:  # a method failing is a result to report
            table.add(name, f"failed: {short_error(exc)}", "", "")
            continue
        means[name] = 100 * statistics.mean(scores)
        table.add(name, f"{means[name]:.2f} %", ", ".join(f"{100 * s:.2f}" for s in scores), count(macs))
    if OURS in means and TP in means:
        met = means[OURS] >= means[TP]
        section.targets.append(
            Target(
                "prunecli >= Torch-Pruning (mean top-1, same budget)",
                f"{means[OURS]:.2f} % vs {means[TP]:.2f} %",
                met,
                "" if met else "see the per-seed spread and the MACs column: the two keep different widths",
            )
        )
    else:
        section.targets.append(Target("prunecli >= Torch-Pruning (mean top-1)", "not both measured", None))
    return section
