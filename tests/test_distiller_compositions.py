"""Distiller's per-tensor pruners (element levels, thresholds, surgery, Baidu ramps, structure
thresholds) run as engine compositions; their masks must stay bit-identical to the hand-written
classes they replaced.

The oracle is ``tests/data/distiller_tensorwise_masks.json``: sha256 digests of every mask after
every training step of the cases below, recorded with the hand-written classes (run this file as a
script to print them). The Distiller examples' fingerprints cover the same classes on real
schedules; these cases also cover the classes no example uses (SparsityLevel, Magnitude,
StructureParameterPruner) and options the examples leave alone (policy ``levels``, growing
splicing sensitivity, every threshold group type and criterion).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.compression import TinyCNN
from support.mask_digests import run_digests, schedule_text

DATA = Path(__file__).parent / "data" / "distiller_tensorwise_masks.json"
EPOCHS, STEPS = 6, 3

#: name -> (pruner entry, policy timing[, policy arguments])
CASES: dict[str, tuple[str, ...]] = {
    "level": (
        "class: SparsityLevelParameterPruner\n    levels: {conv1.weight: 0.3, '*': 0.6}",
        "epochs: [0, 2]",
    ),
    "level_policy_levels": (
        "class: SparsityLevelParameterPruner\n    levels: {conv1.weight: 0.3}",
        "epochs: [0, 3]",
        "levels: {fc.weight: 0.5, conv2.weight: 0.25}",
    ),
    "agp": (
        "class: AutomatedGradualPruner\n    initial_sparsity: 0.05\n    final_sparsity: 0.7\n"
        "    weights: [conv1.weight, conv2.weight, fc.weight]",
        "starting_epoch: 0\n    ending_epoch: 6\n    frequency: 1",
    ),
    "magnitude": (
        "class: MagnitudeParameterPruner\n    thresholds: {'*': 0.05, fc.weight: 0.1}",
        "epochs: [0, 3]",
    ),
    "sensitivity": (
        "class: SensitivityPruner\n    sensitivities: {conv2.weight: 0.7, '*': 0.4}",
        "starting_epoch: 0\n    ending_epoch: 6\n    frequency: 2",
    ),
    "splicing": (
        "class: SplicingPruner\n    sensitivities: {conv2.weight: 0.3, '*': 0.2}\n    low_thresh_mult: 0.9\n"
        "    hi_thresh_mult: 1.1\n    sensitivity_multiplier: 0.5",
        "starting_epoch: 0\n    ending_epoch: 6\n    frequency: 1",
        "mini_batch_pruning_frequency: 1",
    ),
    "baidu": (
        "class: BaiduRNNPruner\n    q: 0.2\n    ramp_epoch_offset: 2\n    ramp_slope_mult: 2\n"
        "    weights: [conv2.weight, fc.weight]",
        "starting_epoch: 0\n    ending_epoch: 6\n    frequency: 1",
    ),
    "structure_max": (
        "class: StructureParameterPruner\n    threshold_criteria: Max\n    reg_regims:\n"
        "      conv1.weight: [0.3, Filters]\n      conv2.weight: [0.15, Channels]\n      fc.weight: [0.2, Rows]",
        "epochs: [0, 2, 4]",
    ),
    "structure_mean_abs": (
        "class: StructureParameterPruner\n    threshold_criteria: Mean_Abs\n    reg_regims:\n"
        "      conv1.weight: [0.09, 3D]\n      conv2.weight: [0.05, 2D]\n      fc.weight: [0.12, Cols]",
        "epochs: [0, 2, 4]",
    ),
}


def mask_digests(case: str) -> list[str]:
    """The masks' digest after every step of a short seeded run, then the number of masked weights."""
    entry, policy, *args = CASES[case]
    return run_digests(schedule_text(entry, policy, *args), TinyCNN, epochs=EPOCHS, steps=STEPS)


@pytest.mark.parametrize("case", sorted(CASES))
def test_masks_are_those_of_the_hand_written_classes(case: str) -> None:
    recorded = json.loads(DATA.read_text(encoding="utf-8"))[case]
    digests = mask_digests(case)
    assert int(recorded[-1].split("=")[1]) > 0  # the case prunes something
    assert digests == recorded


@pytest.mark.parametrize("first", ["prunecli.engine", "prunecli.pruners"])
def test_engine_and_pruners_import_in_either_order(first: str) -> None:
    """The engine reads the pruners' criteria and the pruners' compositions read the engine: a
    fresh interpreter must import either package first without a circular-import error."""
    done = subprocess.run(
        [sys.executable, "-c", f"import {first}"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-1500:]


if __name__ == "__main__":
    json.dump({case: mask_digests(case) for case in sorted(CASES)}, sys.stdout, indent=1)
