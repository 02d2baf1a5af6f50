"""The usual training and evaluation transforms per data-set family.

In-memory sets (digits, MNIST, CIFAR) are uint8 tensors and use ``torchvision.transforms.v2``
on tensors; ImageFolder reads PIL images. Normalisation statistics are the commonly published
per-channel means and standard deviations of each training set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchvision.transforms import v2

from prunecli.data.info import STATS


def _to_float(stats: str) -> list[v2.Transform]:
    mean, std = STATS[stats]
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def tensor_eval(stats: str) -> v2.Compose:
    return v2.Compose(_to_float(stats))


def cifar_train(stats: str) -> v2.Compose:
    """Random 32x32 crop of the 4-pixel zero-padded image and a horizontal flip."""
    return v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), *_to_float(stats)])


def imagenet_train(image_size: int = 224) -> v2.Compose:
    return v2.Compose(
        [
            v2.RandomResizedCrop(image_size, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.PILToTensor(),
            *_to_float("imagenet"),
        ]
    )


def imagenet_eval(image_size: int = 224) -> v2.Compose:
    """Resize to image_size / 0.875 (256 for 224) and take the central crop."""
    return v2.Compose(
        [
            v2.Resize(int(round(image_size / 0.875)), antialias=True),
            v2.CenterCrop(image_size),
            v2.PILToTensor(),
            *_to_float("imagenet"),
        ]
    )


#: transform name (as Intel LPOT writes them) -> its torchvision v2 builder; ToTensor is
#: PILToTensor plus the float conversion, so a Normalize after it sees values in [0, 1]
NAMED_TRANSFORMS: dict[str, Callable[..., list[v2.Transform]]] = {
    "RandomResizedCrop": lambda size, **kw: [v2.RandomResizedCrop(size, antialias=True, **kw)],
    "RandomHorizontalFlip": lambda **kw: [v2.RandomHorizontalFlip(**kw)],
    "RandomCrop": lambda size, **kw: [v2.RandomCrop(size, **kw)],
    "Resize": lambda size, **kw: [v2.Resize(size, antialias=True, **kw)],
    "CenterCrop": lambda size: [v2.CenterCrop(size)],
    "ToTensor": lambda: [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)],
    "Normalize": lambda mean, std: [v2.Normalize(mean, std)],
}
#: the random transforms, replaced for evaluation by their deterministic counterpart (or dropped)
_EVAL_FORM: dict[str, Callable[[dict[str, Any]], list[list[Any]]]] = {
    "RandomResizedCrop": lambda a: [
        ["Resize", {"size": int(round(_side(a["size"]) / 0.875))}],
        ["CenterCrop", {"size": a["size"]}],
    ],
    "RandomCrop": lambda a: [["CenterCrop", {"size": a["size"]}]],
    "RandomHorizontalFlip": lambda a: [],
}


def _side(size: Any) -> int:
    return int(size[0] if isinstance(size, list | tuple) else size)


def from_spec(spec: Sequence[Sequence[Any]]) -> v2.Compose:
    """``[[name, {args}], ...]`` (plain data, as a dialect's training section gives them) as a pipeline.

    Raises ValueError naming the transform whose arguments torchvision refuses.
    """
    steps: list[v2.Transform] = []
    for name, args in spec:
        if name not in NAMED_TRANSFORMS:
            raise ValueError(f"unknown transform {name!r}; known: {', '.join(NAMED_TRANSFORMS)}")
        try:
            steps += NAMED_TRANSFORMS[name](**dict(args or {}))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"transform {name}: {exc}") from None
    if not any(name == "ToTensor" for name, _ in spec):
        steps += [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)]
    return v2.Compose(steps)


def eval_spec(spec: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """The evaluation form of a training pipeline: random crops become resize and centre crop,
    random flips go, everything else (ToTensor, Normalize) stays."""
    out: list[list[Any]] = []
    for name, args in spec:
        out += _EVAL_FORM[name](dict(args or {})) if name in _EVAL_FORM else [[name, dict(args or {})]]
    return out


def spec_size(spec: Sequence[Sequence[Any]]) -> int | None:
    """The image side a pipeline ends with (its last crop or resize), or None."""
    size = None
    for name, args in spec:
        if name in ("RandomResizedCrop", "RandomCrop", "CenterCrop", "Resize") and "size" in (args or {}):
            size = _side(args["size"])
    return size
