"""Quantization oracles written out by hand from the plan's formula, for the int8 tests.

``q = clamp(round(x / scale) + zero_point, qmin, qmax)``, ``x' = (q - zero_point) * scale``: the
reference applies exactly that at every point the plan names, in float64, on the quickstart
model's structure spelled out layer by layer (no graph rewriting, no quantized kernels).
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
    q = torch.clamp(torch.round(x / scale) + zero, tq.qmin, tq.qmax)
    return (q - zero) * scale


def _layer(plan: QuantPlan, name: str, module: nn.Module, x: torch.Tensor, relu: bool) -> torch.Tensor:
    lq = plan.layers[name]
    w = fake(module.weight.detach(), lq.weight)
    b = module.bias.detach().to(torch.float64)
    x = fake(x, lq.input)
    if isinstance(module, nn.Conv2d):
        y = F.conv2d(x, w, b, module.stride, module.padding)
    else:
        y = F.linear(x, w, b)
    return fake(F.relu(y) if relu else y, lq.output)


def reference_digits(folded: nn.Module, plan: QuantPlan, x: torch.Tensor) -> torch.Tensor:
    """The fake-quant forward of a BatchNorm-folded ``resnet_digits`` under ``plan``, in float64."""
    x = _layer(plan, "conv1", folded.conv1, x, relu=True)
    for stage in ("layer1", "layer2"):
        block = getattr(folded, stage)[0]
        out = _layer(plan, f"{stage}.0.conv1", block.conv1, x, relu=True)
        out = _layer(plan, f"{stage}.0.conv2", block.conv2, out, relu=False)
        residual = x
        if block.downsample is not None:
            residual = _layer(plan, f"{stage}.0.downsample.0", block.downsample[0], x, relu=False)
        x = fake(F.relu(residual + out), plan.layers[f"{stage}.0.residual_eltwiseadd"].output)
    # pooling an int8 tensor gives an int8 tensor on the same grid: the average is rounded to it
    x = fake(F.adaptive_avg_pool2d(x, 1), plan.layers["layer2.0.residual_eltwiseadd"].output).flatten(1)
    return _layer(plan, "fc", folded.fc, x, relu=False)
