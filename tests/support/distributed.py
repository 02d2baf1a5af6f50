"""Shared pieces of the multi-process tests: schedules, run settings, launching, comparing runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import torch

from prunecli.checkpoint import load_checkpoint

# resnet20_cifar: Taylor (gradient) ranking of two block-internal convs at epoch 0, L1 at epoch 1,
# thinning at epoch 1; gradient statistics must be summed over processes to rank identically.
RESNET20_SCHEDULE = textwrap.dedent(
    """\
    version: 1
    pruners:
      taylor:
        class: GradientRankedFilterPruner
        desired_sparsity: 0.25
        group_type: Filters
        weights: [layer2.0.conv1.weight]
      magnitude:
        class: L1RankedStructureParameterPruner
        desired_sparsity: 0.5
        group_type: Filters
        weights: [layer3.0.conv1.weight]
    extensions:
      net_thinner:
        class: FilterRemover
        thinning_func_str: remove_filters
        arch: resnet20_cifar
        dataset: cifar10
    policies:
      - pruner: {instance_name: taylor}
        epochs: [1]
      - pruner: {instance_name: magnitude}
        epochs: [1]
      - extension: {instance_name: net_thinner}
        epochs: [1]
    """
)


def digits_args(*, batch_size: int, epochs: int) -> dict[str, Any]:
    """Run settings for the tiny digits runs (as a config mapping)."""
    return {
        "model": "resnet_digits", "model_args": {"width": 8}, "dataset": "digits", "epochs": epochs,
        "batch_size": batch_size, "max_steps_per_epoch": 4, "max_eval_batches": 3, "device": "cpu",
        "threads": 1, "auto_dependency": True, "seed": 1, "quiet": True, "lr": 0.1,
    }  # fmt: skip


def as_options(settings: dict[str, Any]) -> list[str]:
    """The same settings as ``prunecli run`` command-line options."""
    out: list[str] = []
    for key, value in settings.items():
        if isinstance(value, bool):
            out.append(f"--set={key}={str(value).lower()}")
        elif isinstance(value, dict):
            inner = ", ".join(f"{k}: {v}" for k, v in value.items())
            out.append(f"--set={key}={{{inner}}}")
        else:
            out.append(f"--set={key}={value}")
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prunecli(*args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen:
    full_env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
        **kwargs,
    )  # fmt: skip


def architecture(recipe: dict[str, Any] | None) -> dict[str, Any] | None:
    """A thinning recipe without its verification record (measured deviations differ by rounding)."""
    return None if recipe is None else {k: v for k, v in recipe.items() if k != "checks"}


def assert_same_run(one: Path, other: Path, *, atol: float) -> None:
    """Same masks (exactly), same tensor shapes (thinned architecture), weights within ``atol``."""
    a, b = load_checkpoint(one / "checkpoint.pt"), load_checkpoint(other / "checkpoint.pt")
    assert a["masks"].keys() == b["masks"].keys()
    for name in a["masks"]:
        assert torch.equal(a["masks"][name], b["masks"][name]), name
    assert architecture(a["recipe"]) == architecture(b["recipe"])
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, tensor in a["state_dict"].items():
        other_tensor = b["state_dict"][name]
        assert tensor.shape == other_tensor.shape, name
        assert torch.allclose(tensor.double(), other_tensor.double(), rtol=0, atol=atol), (
            name, float((tensor.double() - other_tensor.double()).abs().max()),
        )  # fmt: skip
