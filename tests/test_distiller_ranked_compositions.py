"""Distiller's ranked structure pruners (L1/L2-ranked and their AGP forms, random levels,
activation, gradient, random and Bernoulli filter pruners) run as engine compositions; their masks
must stay bit-identical to the hand-written classes they replaced.

The oracle is ``tests/data/distiller_ranked_masks.json``: sha256 digests of every mask after every
training step of the cases below, then the pruners' checkpoint state, recorded with the
hand-written classes (run this file as a script to print them). The cases cover every group type,
Leader groups, ``noise``, ``group_size``, ``round_to``, ``auto_dependency`` coupling (filters and
channels, with and without rounding), ``prune_normalized``, and DropFilter's scaled masks under a
Leader group and under coupling.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from support.compression import ResBlockNet, TinyCNN
from support.mask_digests import run_digests, schedule_text
from torch import nn

DATA = Path(__file__).parent / "data" / "distiller_ranked_masks.json"
EPOCHS, STEPS = 6, 3


class NormNet(nn.Module):
    """A residual block normalised by GroupNorm: ``prune_normalized`` couples across the norm."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.GroupNorm(2, 8)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.norm(self.stem(x)))
        x = torch.relu(self.a(x) + x)
        return self.fc(x.mean(dim=(2, 3)))


ONCE = "epochs: [0, 3]"
EVERY = "starting_epoch: 0\n    ending_epoch: 6\n    frequency: 1"
L1 = "class: L1RankedStructureParameterPruner"
L2 = "class: L2RankedStructureParameterPruner"

#: name -> (pruner entry, policy timing, policy arguments or None, model, build options)
CASES: dict[str, tuple[str, str, str | None, type[nn.Module], dict[str, Any]]] = {
    "l1_filters": (
        f"{L1}\n    group_type: Filters\n    desired_sparsity: 0.5\n    weights: [conv1.weight, conv2.weight]",
        ONCE, None, TinyCNN, {},
    ),
    "l2_channels": (
        f"{L2}\n    group_type: Channels\n    desired_sparsity: 0.4\n    weights: [conv2.weight]",
        ONCE, None, TinyCNN, {},
    ),
    "l1_rows": (
        f"{L1}\n    group_type: Rows\n    desired_sparsity: 0.5\n    weights: [fc.weight]", ONCE, None, TinyCNN, {},
    ),
    "l1_3d_noise_group_size": (
        f"{L1}\n    group_type: 3D\n    desired_sparsity: 0.5\n    noise: 0.5\n    group_size: 2\n"
        "    weights: [conv2.weight]",
        EVERY, None, TinyCNN, {},
    ),
    "l1_blocks_repetitions": (
        f"{L1}\n    group_type: Blocks\n    desired_sparsity: 0.5\n    kwargs: {{block_shape: [2, 1, 1, 1]}}\n"
        "    weights: [conv2.weight]",
        ONCE, None, TinyCNN, {},
    ),
    "l2_blocks_depth": (
        f"{L2}\n    group_type: Blocks\n    desired_sparsity: 0.4\n    kwargs: {{block_shape: [1, 4, 1, 1]}}\n"
        "    weights: [conv2.weight]",
        ONCE, None, TinyCNN, {},
    ),
    "l1_round_to": (
        f"{L1}\n    group_type: Filters\n    desired_sparsity: 0.3\n    round_to: 4\n    weights: [conv2.weight]",
        ONCE, None, TinyCNN, {},
    ),
    "l1_agp_leader": (
        "class: L1RankedStructureParameterPruner_AGP\n    initial_sparsity: 0.1\n    final_sparsity: 0.6\n"
        "    group_type: Filters\n    group_dependency: Leader\n    weights: [a.weight, b.weight]",
        EVERY, None, ResBlockNet, {},
    ),
    "l2_agp_channels": (
        "class: L2RankedStructureParameterPruner_AGP\n    initial_sparsity: 0.05\n    final_sparsity: 0.7\n"
        "    group_type: Channels\n    weights: [conv2.weight]",
        EVERY, None, TinyCNN, {},
    ),
    "random_level": (
        "class: RandomLevelStructureParameterPruner\n    group_type: Filters\n    sparsity_range: [0.3, 0.9]\n"
        "    weights: [conv1.weight, conv2.weight]",
        EVERY, None, TinyCNN, {},
    ),
    "apoz": (
        "class: ActivationAPoZRankedFilterPruner\n    group_type: Filters\n    desired_sparsity: 0.5\n"
        "    weights: [conv1.weight, conv2.weight]",
        "epochs: [1, 4]", None, TinyCNN, {},
    ),
    "mean_agp": (
        "class: ActivationMeanRankedFilterPruner_AGP\n    initial_sparsity: 0.1\n    final_sparsity: 0.5\n"
        "    group_type: Filters\n    weights: [conv2.weight]",
        EVERY, None, TinyCNN, {},
    ),
    "gradient_agp": (
        "class: GradientRankedFilterPruner_AGP\n    initial_sparsity: 0.1\n    final_sparsity: 0.5\n"
        "    group_type: Filters\n    weights: [conv1.weight, conv2.weight]",
        EVERY, None, TinyCNN, {},
    ),
    "gradient_round_to": (
        "class: GradientRankedFilterPruner\n    group_type: Filters\n    desired_sparsity: 0.3\n    round_to: 4\n"
        "    weights: [conv2.weight]",
        "epochs: [2]", None, TinyCNN, {},
    ),
    "random_ranked": (
        "class: RandomRankedFilterPruner\n    group_type: Filters\n    desired_sparsity: 0.5\n"
        "    weights: [conv2.weight]",
        "epochs: [0, 2, 4]", None, TinyCNN, {},
    ),
    "bernoulli": (
        "class: BernoulliFilterPruner_AGP\n    initial_sparsity: 0.1\n    final_sparsity: 0.4\n"
        "    group_type: Filters\n    weights: [conv2.weight]",
        EVERY, None, TinyCNN, {},
    ),
    "bernoulli_leader": (
        "class: BernoulliFilterPruner\n    group_type: Filters\n    desired_sparsity: 0.4\n"
        "    group_dependency: Leader\n    weights: [a.weight, b.weight]",
        EVERY, "mini_batch_pruning_frequency: 1", ResBlockNet, {},
    ),
    "bernoulli_coupled": (
        "class: BernoulliFilterPruner\n    group_type: Filters\n    desired_sparsity: 0.4\n"
        "    weights: [a.weight]",
        EVERY, None, ResBlockNet, {"auto_dependency": True},
    ),
    "coupled_filters": (
        f"{L1}\n    group_type: Filters\n    desired_sparsity: 0.5\n    weights: [a.weight]",
        ONCE, None, ResBlockNet, {"auto_dependency": True},
    ),
    "coupled_filters_round_to": (
        "class: L1RankedStructureParameterPruner_AGP\n    initial_sparsity: 0.1\n    final_sparsity: 0.6\n"
        "    group_type: Filters\n    weights: [stem.weight, a.weight]",
        EVERY, None, ResBlockNet, {"auto_dependency": True, "round_to": 3},
    ),
    "coupled_channels": (
        f"{L2}\n    group_type: Channels\n    desired_sparsity: 0.4\n    weights: [a.weight]",
        ONCE, None, ResBlockNet, {"auto_dependency": True},
    ),
    "prune_normalized": (
        f"{L1}\n    group_type: Filters\n    desired_sparsity: 0.25\n    prune_normalized: true\n"
        "    weights: [stem.weight]",
        ONCE, None, NormNet, {"traced": True},
    ),
}


def mask_digests(case: str) -> list[str]:
    """Every step's mask digest, the masked-weight count and the pruners' state digest."""
    entry, policy, args, model, build = CASES[case]
    text = schedule_text(entry, policy, args)
    return run_digests(text, model, epochs=EPOCHS, steps=STEPS, build=build, with_state=True)


@pytest.mark.parametrize("case", sorted(CASES))
def test_masks_are_those_of_the_hand_written_classes(case: str) -> None:
    recorded = json.loads(DATA.read_text(encoding="utf-8"))[case]
    digests = mask_digests(case)
    assert int(recorded[-2].split("=")[1]) > 0  # the case prunes something
    assert digests == recorded


if __name__ == "__main__":
    torch.set_num_threads(1)
    json.dump({case: mask_digests(case) for case in sorted(CASES)}, sys.stdout, indent=1)
