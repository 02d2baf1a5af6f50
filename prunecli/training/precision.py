"""Mixed precision for the training step: autocast (bf16 or fp16) and, for fp16, a GradScaler.

Weights, masks and optimizer state stay in float32; only the forward pass runs in the lower
precision. fp16 gradients are scaled to avoid underflow; when the scaler finds an infinity it skips
the optimizer step, and the compression scheduler's mask re-application after the step still
runs, so masked weights stay exactly zero whether or not a step happened. bf16 has float32's
range and needs no scaler.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from prunecli.errors import ConfigError

#: ``--amp`` value -> autocast dtype
AMP_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """How one training step runs its forward and backward pass; full precision when ``amp`` is None."""

    def __init__(self, amp: str | None, device: torch.device) -> None:
        if amp is not None and amp not in AMP_DTYPES:
            raise ConfigError(f"unknown --amp value '{amp}'", hint="use --amp bf16 or --amp fp16")
        self.amp = amp
        self.device = device
        self.dtype = AMP_DTYPES.get(amp) if amp else None
        self.scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
        self.skipped_steps = 0

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
            return
        with torch.autocast(self.device.type, dtype=self.dtype):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring the gradients back to their true size before hooks read them (fp16 only)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """The optimizer step; False when the scaler skipped it because a gradient was not finite."""
        if self.scaler is None:
            optimizer.step()
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        stepped = self.scaler.get_scale() >= scale  # the scale shrinks exactly when a step is skipped
        self.skipped_steps += 0 if stepped else 1
        return stepped

    def state_dict(self) -> dict[str, Any]:
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
