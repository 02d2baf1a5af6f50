"""Static facts about the known data sets, importable without torch or torchvision.

Kept apart from the loaders so that :mod:`prunecli.models` can size a model's input and
classifier for a data set without importing any data-loading machinery.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    input_shape: tuple[int, int, int] | None  # (C, H, W); None when it depends on options
    num_classes: int | None  # None when it depends on the files found or on options
    family: str  # which zoo family of models fits it: digits, mnist, cifar, imagenet, text, detection


DATASET_INFO: dict[str, DatasetInfo] = {
    "digits": DatasetInfo("digits", (1, 8, 8), 10, "digits"),
    "mnist": DatasetInfo("mnist", (1, 28, 28), 10, "mnist"),
    "cifar10": DatasetInfo("cifar10", (3, 32, 32), 10, "cifar"),
    "cifar100": DatasetInfo("cifar100", (3, 32, 32), 100, "cifar"),
    "imagefolder": DatasetInfo("imagefolder", (3, 224, 224), None, "imagenet"),
    "imagenet": DatasetInfo("imagenet", (3, 224, 224), 1000, "imagenet"),
    "fake": DatasetInfo("fake", None, None, "imagenet"),
    # token files: the vocabulary (the class count) is read from the files
    "text": DatasetInfo("text", None, None, "text"),
    "wikitext2": DatasetInfo("wikitext2", None, None, "text"),
    "ptb": DatasetInfo("ptb", None, None, "text"),
    # detection: the class count includes the background; the image side is an option
    "fake_detection": DatasetInfo("fake_detection", None, None, "detection"),
    "detection": DatasetInfo("detection", None, None, "detection"),
}


# per-channel (mean, std) of each training set, for Normalize
STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "digits": ((0.3053,), (0.3760,)),  # load_digits() / 16, over all 1797 images
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def dataset_info(name: str) -> DatasetInfo | None:
    return DATASET_INFO.get(name.lower())
