"""The small model behind the NNI oracle masks (tests/data/nni_oracle/, made by scripts/nni_oracle.py).

Its weights are stored in ``weights.pt`` next to the masks, so NNI and prunecli prune exactly the
same tensors whatever random number generator a later torch uses.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

ORACLE_DIR = Path(__file__).resolve().parents[1] / "data" / "nni_oracle"
WEIGHTS = ORACLE_DIR / "weights.pt"
CASES = ORACLE_DIR / "cases.json"
MASKS = ORACLE_DIR / "masks.json"


class OracleNet(nn.Module):
    """Three convolutions (one with BatchNorm) and two Linear layers, input 1x3x8x8."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc1 = nn.Linear(16 * 2 * 2, 24)
        self.fc2 = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv3(x)), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def oracle_model() -> OracleNet:
    """The model with the stored weights (those NNI pruned)."""
    model = OracleNet()
    model.load_state_dict(torch.load(WEIGHTS, weights_only=True))
    return model.eval()


def mask_digest(mask: torch.Tensor) -> str:
    """A short digest of a 0/1 mask (its bytes as uint8), equal for equal masks."""
    import hashlib

    data = (mask != 0).to(torch.uint8).contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def pruned_rows(mask: torch.Tensor) -> list[int]:
    """The output channels (dimension 0) a mask zeroes entirely."""
    flat = (mask != 0).reshape(mask.shape[0], -1)
    return [i for i in range(mask.shape[0]) if not bool(flat[i].any())]


def prunecli_masks(schedule_text: str, name: str, pruner: str | None = None) -> dict[str, torch.Tensor]:
    """The masks prunecli sets at the first pruning epoch on the oracle weights (all-ones left out)."""
    from prunecli.compression import build_compression
    from prunecli.schedule import load_schedule

    model = oracle_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = load_schedule(name, text=schedule_text, pruner=pruner)
    scheduler = build_compression(schedule, model, optimizer, example_input=torch.randn(1, 3, 8, 8))
    scheduler.on_epoch_begin(0, optimizer)
    return {n: m.clone() for n, m in scheduler.masks.items() if m is not None and not bool(m.all())}


def mask_summary(masks: dict[str, torch.Tensor]) -> dict[str, dict]:
    """What masks.json records per weight: digest, zero count, removed output channels."""
    return {
        n: {"digest": mask_digest(m), "zeros": int((m == 0).sum()), "pruned_rows": pruned_rows(m)}
        for n, m in masks.items()
    }
