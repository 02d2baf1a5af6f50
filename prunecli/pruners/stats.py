"""Training-time statistics for the data-driven filter rankers, gathered with hooks (no extra pass)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _owner_module(model: nn.Module, param_name: str) -> nn.Module:
    module_name = param_name.rsplit(".", 1)[0] if "." in param_name else ""
    return model.get_submodule(module_name)


class _Accumulator:
    """Per-parameter running sums of a per-filter statistic, weighted by the batch size."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, float] = {}
        self.handles: list[Any] = []

    def add(self, name: str, value: torch.Tensor, count: float) -> None:
        value = value.detach().float()
        if name in self.sums and self.sums[name].shape == value.shape:
            self.sums[name] += value * count
            self.counts[name] += count
        else:
            self.sums[name] = value * count
            self.counts[name] = count

    def take(self, name: str) -> torch.Tensor | None:
        """The average since the last take (then forgotten), or ``None`` if nothing was seen.

        On several processes the sums and counts of all of them are added first, so every process
        ranks by the statistic of the whole global batch (and ranks identically).
        """
        total = self.sums.pop(name, None)
        count = self.counts.pop(name, 0.0)
        if total is None:  # every process runs the same steps, so this holds on all or on none
            return None
        total, count = across_processes(total, count)
        return None if count == 0 else total / count

    def reset(self) -> None:
        self.sums.clear()
        self.counts.clear()

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def state_dict(self) -> dict[str, Any]:
        """The sums of the whole job (a collective on several processes: every process calls it)."""
        sums, counts = {}, {}
        for name in sorted(self.sums):
            sums[name], counts[name] = across_processes(self.sums[name], self.counts[name])
        return {"sums": sums, "counts": counts}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Rank 0 takes the job's sums, the other processes start from zero, so sums add up again."""
        self.sums = dict(state.get("sums", {}))
        self.counts = dict(state.get("counts", {}))
        if _rank() != 0:
            self.sums = {k: torch.zeros_like(v) for k, v in self.sums.items()}
            self.counts = dict.fromkeys(self.counts, 0.0)


class ActivationStats(_Accumulator):
    """Per output channel of ``relu(conv(x))``: APoZ (percent zeros) or mean activation."""

    def __init__(self, statistic: str) -> None:
        super().__init__()
        if statistic not in ("apoz", "mean"):
            raise ValueError(f"unknown activation statistic {statistic!r}")
        self.statistic = statistic

    def attach(self, model: nn.Module, param_names: Iterable[str]) -> None:
        self.detach()
        for name in param_names:
            module = _owner_module(model, name)
            self.handles.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if not module.training or not isinstance(output, torch.Tensor) or output.dim() < 2:
                return
            with torch.no_grad():
                act = (
                    F.relu(output.detach()).flatten(2)
                    if output.dim() > 2
                    else F.relu(output.detach())[..., None]
                )
                if self.statistic == "apoz":
                    per_sample = 100.0 * (act == 0).float().mean(dim=2)
                else:
                    per_sample = act.float().mean(dim=2)
                self.add(name, per_sample.mean(dim=0), float(output.size(0)))

        return hook


class GradientStats(_Accumulator):
    """Per filter ``sum(grad * w)``, summed over every backward pass (a tensor hook on the weight)."""

    def attach(self, model: nn.Module, param_names: Iterable[str]) -> None:
        self.detach()
        params = dict(model.named_parameters())
        for name in param_names:
            self.handles.append(params[name].register_hook(self._hook(name, params[name])))

    def _hook(self, name: str, param: torch.Tensor):
        def hook(grad: torch.Tensor) -> None:
            with torch.no_grad():
                score = (grad * param).reshape(grad.size(0), -1).sum(dim=1)
                self.add(name, score, 1.0)

        return hook

    def take(self, name: str) -> torch.Tensor | None:
        """The sum since the last take; across processes the mean of their sums.

        Each process's hook sees the gradient of its own loss, and DDP's gradient is the mean of
        those, so the mean of the per-process sums is what a single process would have summed.
        """
        total = self.sums.pop(name, None)
        self.counts.pop(name, None)
        if total is None:
            return None
        summed, _ = across_processes(total, 0.0)
        return summed / _world_size()

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()  # sums of the processes' sums: keep their mean
        return {"sums": {k: v / _world_size() for k, v in state["sums"].items()}, "counts": state["counts"]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)  # rank 0 holds the mean; times the processes, it is their sum
        self.sums = {k: v * _world_size() for k, v in self.sums.items()}


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


def _world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def across_processes(total: torch.Tensor, count: float) -> tuple[torch.Tensor, float]:
    """``total`` and ``count`` summed over the processes of a distributed job (unchanged alone)."""
    if _world_size() == 1:
        return total, count
    packed = torch.cat([total.reshape(-1).double(), torch.tensor([count], dtype=torch.float64)])
    if torch.distributed.get_backend() == "nccl":
        packed = packed.cuda()
    torch.distributed.all_reduce(packed)
    packed = packed.to(total.device)
    return packed[:-1].to(total.dtype).reshape(total.shape), float(packed[-1])
