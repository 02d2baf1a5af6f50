"""The usual training and evaluation transforms per data-set family.

In-memory sets (digits, MNIST, CIFAR) are uint8 tensors and use ``torchvision.transforms.v2``
on tensors; ImageFolder reads PIL images. Normalisation statistics are the commonly published
per-channel means and standard deviations of each training set.
"""

from __future__ import annotations

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
