"""Tiny hand-built modules, one per dependency pattern, shared by the graph and thinning tests."""

from __future__ import annotations

import torch
from torch import nn


class ConvBN(nn.Module):
    """conv -> BN -> ReLU -> conv -> pool -> flatten -> linear."""

    input_shape = (2, 3, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = self.conv2(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class PreActResidual(nn.Module):
    """Pre-activation block: BN before conv, identity shortcut added to the block output."""

    input_shape = (2, 3, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, bias=False)
        self.bn_out = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.stem(x)
        out = self.conv1(torch.relu(self.bn1(x)))
        out = self.conv2(torch.relu(self.bn2(out)))
        out = out + x
        out = torch.relu(self.bn_out(out))
        return self.fc(out.mean((2, 3)))


class Concat(nn.Module):
    """Two branches concatenated along channels, read by one conv (offsets 0 and 4)."""

    input_shape = (2, 3, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 6, 3, padding=1)
        self.c = nn.Conv2d(10, 5, 1)
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        y = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], dim=1)
        return self.fc(self.c(y).mean((2, 3)))


class Chunk(nn.Module):
    """One conv's output chunked in two halves, each read by its own conv."""

    input_shape = (2, 3, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.left = nn.Conv2d(4, 5, 1)
        self.right = nn.Conv2d(4, 5, 1)
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        a, b = torch.relu(self.conv(x)).chunk(2, dim=1)
        return self.fc((self.left(a) + self.right(b)).mean((2, 3)))


class FlattenLinear(nn.Module):
    """conv output flattened (channel x 4 x 4 positions) into a linear layer, then linear -> linear."""

    input_shape = (2, 3, 4, 4)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc1 = nn.Linear(6 * 16, 10)
        self.fc2 = nn.Linear(10, 3)

    def forward(self, x):
        x = torch.relu(self.conv(x)).view(x.size(0), -1)
        return self.fc2(torch.relu(self.fc1(x)))


class Depthwise(nn.Module):
    """Pointwise -> depthwise (multiplier 1) -> BN -> depthwise (multiplier 2) -> pointwise."""

    input_shape = (2, 3, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.pw1 = nn.Conv2d(3, 8, 1)
        self.dw1 = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.dw2 = nn.Conv2d(8, 16, 3, padding=1, groups=8)
        self.pw2 = nn.Conv2d(16, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.dw2(torch.relu(self.bn(self.dw1(self.pw1(x)))))
        return self.fc(self.pw2(x).mean((2, 3)))


class Grouped(nn.Module):
    """A grouped conv (groups=2) between two plain convs."""

    input_shape = (2, 3, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 1)
        self.grouped = nn.Conv2d(8, 12, 3, padding=1, groups=2)
        self.conv3 = nn.Conv2d(12, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.grouped(torch.relu(self.conv1(x)))
        return self.fc(self.conv3(torch.relu(x)).mean((2, 3)))


class SqueezeExcite(nn.Module):
    """x * sigmoid(fc2(relu(fc1(avgpool(x))))): the gate shares x's channels."""

    input_shape = (2, 3, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc1 = nn.Conv2d(8, 4, 1)
        self.fc2 = nn.Conv2d(4, 8, 1)
        self.out = nn.Conv2d(8, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(nn.functional.adaptive_avg_pool2d(x, 1)))))
        return self.fc(self.out(x * gate).mean((2, 3)))


class Shuffle(nn.Module):
    """ShuffleNet's channel shuffle: view / transpose / view."""

    input_shape = (2, 3, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.inner = nn.Conv2d(3, 6, 1)
        self.inner2 = nn.Conv2d(6, 3, 1)
        self.out = nn.Conv2d(8, 4, 1)
        self.fc = nn.Linear(4 + 3, 2)

    def forward(self, x):
        y = self.conv(x)
        n, c, h, w = y.size()
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        z = self.inner2(torch.relu(self.inner(x)))
        return self.fc(torch.cat([self.out(y).mean((2, 3)), z.mean((2, 3))], dim=1))


class ConvNeXtLike(nn.Module):
    """Depthwise conv, permute to NHWC, LayerNorm over channels, MLP, layer scale, residual."""

    input_shape = (2, 3, 6, 6)

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.norm = nn.LayerNorm(8)
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 8)
        self.layer_scale = nn.Parameter(torch.full((8, 1, 1), 0.5))
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(nn.functional.gelu(self.fc1(self.norm(y)))).permute(0, 3, 1, 2)
        x = x + self.layer_scale * y
        return self.head(x.mean((2, 3)))


class Attention(nn.Module):
    """Token MLP around multi-head attention: the MLP hidden dim is prunable, attention dims are not."""

    input_shape = (2, 5, 8)

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc1 = nn.Linear(8, 12)
        self.fc2 = nn.Linear(12, 8)

    def forward(self, x):
        x = x + self.attn(x, x, x, need_weights=False)[0]
        return x + self.fc2(torch.relu(self.fc1(x)))


PATTERNS: dict[str, type[nn.Module]] = {
    "conv_bn": ConvBN,
    "preact_residual": PreActResidual,
    "concat": Concat,
    "chunk": Chunk,
    "flatten_linear": FlattenLinear,
    "depthwise": Depthwise,
    "grouped": Grouped,
    "squeeze_excite": SqueezeExcite,
    "shuffle": Shuffle,
    "convnext_like": ConvNeXtLike,
    "attention": Attention,
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    cls = PATTERNS[name]
    model = cls().eval()
    return model, torch.randn(cls.input_shape)
