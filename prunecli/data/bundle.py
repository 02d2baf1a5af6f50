"""The loaded data set (:class:`DataBundle`) and the pieces that make its loaders reproducible.

Shuffling is a pure function of ``(seed, epoch)``: :class:`EpochSampler` draws epoch ``e``'s
order from a generator seeded with ``seed + e``, and reseeds the loader's own generator (which
seeds worker processes, hence their augmentation) the same way. A resumed run calls
``train_loader.sampler.set_epoch(start_epoch)`` and sees exactly the order and worker seeds the
interrupted run would have seen. With ``workers=0`` augmentation draws from the global torch
RNG, whose state the checkpoint restores.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset


class EpochSampler(Sampler[int]):
    """Random order per epoch, determined by ``seed + epoch`` only (see module docstring)."""

    def __init__(self, size: int, seed: int = 0, generator: torch.Generator | None = None) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.generator = generator  # the DataLoader's, reseeded per epoch for worker seeds
        self._reseed_loader()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._reseed_loader()

    def _reseed_loader(self) -> None:
        if self.generator is not None:
            self.generator.manual_seed(self.seed + self.epoch)

    def order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.size, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        order = self.order(self.epoch)
        self.set_epoch(self.epoch + 1)  # the next pass is the next epoch unless told otherwise
        return iter(order)

    def __len__(self) -> int:
        return self.size


def seed_worker(worker_id: int) -> None:
    """Give numpy and random in each worker a seed derived from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class TensorImageDataset(Dataset):
    """Images held in memory as a uint8 (N, C, H, W) tensor; transforms run on tensors (no PIL)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None = None) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


class RandomImageDataset(Dataset):
    """Random images in [0, 1) and random labels, each a pure function of (seed, index).

    Every item draws from its own generator, so items are reproducible in any order and across
    data-loader workers without touching the global random state (torchvision's FakeData reseeds
    the global generators per item, which costs about 20x more on CUDA builds of torch).
    """

    def __init__(self, size: int, shape: Sequence[int], num_classes: int, seed: int) -> None:
        self.size, self.shape, self.num_classes, self.seed = size, tuple(shape), num_classes, seed

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -self.size <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} images")
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index % self.size)
        label = int(torch.randint(self.num_classes, (1,), generator=generator))
        return torch.rand(self.shape, generator=generator), label


@dataclass
class DataBundle:
    """Train / validation / test splits of one data set, plus what a model needs to know."""

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W)
    classes: list[str] | None = None
    info: dict = field(default_factory=dict)  # where it came from, split sizes, options

    def loaders(
        self, batch_size: int, workers: int = 0, seed: int = 0
    ) -> tuple[DataLoader, DataLoader, DataLoader]:
        """(train, val, test) loaders; train shuffles by ``seed + epoch`` (see :class:`EpochSampler`)."""
        generator = torch.Generator()
        sampler = EpochSampler(len(self.train), seed=seed, generator=generator)
        common = {
            "batch_size": batch_size,
            "num_workers": workers,
            "worker_init_fn": seed_worker if workers else None,
            "persistent_workers": False,
        }
        train = DataLoader(self.train, sampler=sampler, generator=generator, **common)
        val = DataLoader(self.val, shuffle=False, **common)
        test = DataLoader(self.test, shuffle=False, **common)
        return train, val, test

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def split_indices(count: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Shuffle ``range(count)`` by seed and cut off ``round(count * fraction)`` as the second part."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    cut = count - int(round(count * fraction))
    return sorted(order[:cut]), sorted(order[cut:])


def limit(dataset: Dataset, max_samples: int | None) -> Dataset:
    """``max_samples`` evenly spaced items (for smoke runs); the data set itself when no limit.

    Evenly spaced rather than the first ones, because folder-based sets are sorted by class.
    """
    size = len(dataset)
    if max_samples is None or size <= max_samples:
        return dataset
    return Subset(dataset, [i * size // max_samples for i in range(max_samples)])


def subset(dataset: Dataset, indices: Sequence[int]) -> Subset:
    return Subset(dataset, list(indices))
