"""BatchNorm whose batch statistics span every process (``sync_batchnorm``), on CPU and on GPU.

With plain DDP each process normalises by the statistics of its own per-process batch, so a run on
N processes is not the single-process run of the global batch. Synchronised, the mean and
variance are summed over the processes (two all-reduces per layer: the mean, then the centred
squares) through a differentiable ``all_reduce`` whose backward pass sums the gradient
contributions of every process; the run then computes what one process with the global batch
would, up to rounding. The normalisation runs in float64: composed from elementary operations
(rather than fused as in ``nn.BatchNorm``), float32 loses up to 1e-3 of some gradients in
near-constant channels, which is enough for runs to drift apart within a few steps.

torch's own ``SyncBatchNorm`` runs only on accelerators and is a different module type; here the
modules stay ``nn.BatchNorm*d`` (same type, parameter names, state dict, fx leaves, thinning) and
only their ``forward`` is replaced on the instance. In evaluation mode the original forward runs.
"""

from __future__ import annotations

import functools

import torch
import torch.distributed as dist
from torch import nn

_MARK = "_prunecli_synced"


class _SumOverProcesses(torch.autograd.Function):
    """``all_reduce(SUM)`` with its gradient: every process's output depends on every input,
    so the gradient of an input is the sum of the output gradients of all processes."""

    @staticmethod
    def forward(ctx: object, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out


def all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    return _SumOverProcesses.apply(tensor)


def synchronise_batchnorm(model: nn.Module) -> int:
    """Make every BatchNorm of ``model`` use cross-process batch statistics; returns how many."""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not getattr(module, _MARK, False):
            module.forward = functools.partial(_synced_forward, module)
            setattr(module, _MARK, True)
            count += 1
    return count


def _synced_forward(module: nn.modules.batchnorm._BatchNorm, input: torch.Tensor) -> torch.Tensor:
    batch_stats = module.training or module.running_mean is None
    if not batch_stats or not dist.is_initialized() or dist.get_world_size() == 1:
        return type(module).forward(module, input)
    dims = [0, *range(2, input.dim())]
    shape = [1, -1] + [1] * (input.dim() - 2)
    x = input.double()  # see the module docstring
    local_count = torch.tensor([input.numel() / input.size(1)], dtype=torch.float64, device=input.device)
    totals = all_reduce(torch.cat([x.sum(dims), local_count]))
    n = totals[-1]
    mean = totals[:-1] / n
    centred = x - mean.view(shape)
    var = all_reduce((centred * centred).sum(dims)) / n
    y = centred * torch.rsqrt(var + module.eps).view(shape)
    if module.affine:
        y = y * module.weight.double().view(shape) + module.bias.double().view(shape)
    if module.training and module.track_running_stats:
        _update_running_stats(module, mean.detach(), var.detach(), float(n.detach()))
    return y.to(input.dtype)


@torch.no_grad()
def _update_running_stats(
    module: nn.modules.batchnorm._BatchNorm, mean: torch.Tensor, var: torch.Tensor, n: float
) -> None:
    """The same update ``nn.BatchNorm`` makes (unbiased variance; cumulative when momentum is None)."""
    factor = 0.0 if module.momentum is None else module.momentum
    if module.num_batches_tracked is not None:
        module.num_batches_tracked.add_(1)
        if module.momentum is None:
            factor = 1.0 / float(module.num_batches_tracked)
    unbiased = var * (n / max(n - 1.0, 1.0))
    module.running_mean.mul_(1 - factor).add_(mean.to(module.running_mean.dtype), alpha=factor)
    module.running_var.mul_(1 - factor).add_(unbiased.to(module.running_var.dtype), alpha=factor)
