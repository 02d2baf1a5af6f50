"""Quantization oracles written out by hand from the plan's formula, for the int8 tests.

``q = clamp(round(x / scale + zero_point), qmin, qmax)``, ``x' = (q - zero_point) * scale``: the
reference applies exactly that at every point the plan names, in float64, on the quickstart
model's structure spelled out layer by layer (no folding, no graph rewriting, no quantized kernels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prunecli.quantization.spec import QuantPlan, TensorQuant


def with_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine terms, so folding matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
    return model.eval()


def fake(x: torch.Tensor, tq: TensorQuant, axis_dims: int | None = None) -> torch.Tensor:
    """The plan's quantize-dequantize of ``x`` (per channel along ``tq.axis`` when it has one)."""
    x = x.to(torch.float64)
    scale, zero = tq.scale.to(torch.float64), tq.zero_point.to(torch.float64)
    if tq.axis is not None and scale.dim() == 1:
        shape = [1] * x.dim()
        shape[tq.axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    q = torch.clamp(torch.round(x / scale + zero), tq.qmin, tq.qmax)
    return (q - zero) * scale


def _layer(plan: QuantPlan, name: str, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A planned conv / linear layer: fake-quantized input and weight, float64 arithmetic."""
    lq = plan.layers[name]
    w = fake(module.weight.detach(), lq.weight)
    b = module.bias.detach().to(torch.float64) if module.bias is not None else None
    x = fake(x, lq.input)
    if isinstance(module, nn.Conv2d):
        return F.conv2d(x, w, b, module.stride, module.padding)
    return F.linear(x, w, b)


def _norm(plan: QuantPlan, name: str, norm: nn.Module, x: torch.Tensor, relu: bool) -> torch.Tensor:
    """The eval-mode BatchNorm in float64, then (ReLU and) its plan entry's output range."""
    f = norm.weight.detach().double() / torch.sqrt(norm.running_var.double() + norm.eps)
    shift = norm.bias.detach().double() - norm.running_mean.double() * f
    y = x * f.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)
    return fake(F.relu(y) if relu else y, plan.layers[name].output)


def reference_digits(model: nn.Module, plan: QuantPlan, x: torch.Tensor) -> torch.Tensor:
    """The int8 forward of an (unfolded, eval-mode) ``resnet_digits`` under ``plan``, in float64.

    Each output is rounded where the int8 model rounds it: after a convolution's BatchNorm (and
    ReLU) at the BatchNorm's range, after a residual addition and its ReLU at the addition's range.
    """
    x = _norm(plan, "bn1", model.bn1, _layer(plan, "conv1", model.conv1, x), relu=True)
    for stage in ("layer1", "layer2"):
        block = getattr(model, stage)[0]
        p = f"{stage}.0"
        out = _norm(plan, f"{p}.bn1", block.bn1, _layer(plan, f"{p}.conv1", block.conv1, x), relu=True)
        out = _norm(plan, f"{p}.bn2", block.bn2, _layer(plan, f"{p}.conv2", block.conv2, out), relu=False)
        residual = x
        if block.downsample is not None:
            conv, norm = block.downsample
            residual = _norm(
                plan, f"{p}.downsample.1", norm, _layer(plan, f"{p}.downsample.0", conv, x), False
            )
        x = fake(F.relu(residual + out), plan.layers[f"{p}.residual_eltwiseadd"].output)
    # pooling an int8 tensor gives an int8 tensor on the same grid: the average is rounded to it
    x = fake(F.adaptive_avg_pool2d(x, 1), plan.layers["layer2.0.residual_eltwiseadd"].output).flatten(1)
    return fake(_layer(plan, "fc", model.fc, x), plan.layers["fc"].output)
