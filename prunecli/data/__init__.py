"""Data sets by name with seeded train/val/test splits: digits, mnist, cifar10/100, imagefolder, fake.

``load_dataset(name, data_dir, seed=..., val_fraction=..., **options) -> DataBundle``; see
docs/data.md for where the files go and :mod:`prunecli.data.bundle` for reproducible shuffling.
"""

from __future__ import annotations

import difflib
import inspect
import os

from prunecli.data.info import DATASET_INFO, DatasetInfo, dataset_info
from prunecli.errors import DataError


def available_datasets() -> list[str]:
    from prunecli.data.sources import SOURCES

    return sorted(SOURCES)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    **options,
):
    """Load a data set by name; options are per data set (e.g. ``max_samples``, ``image_size``)."""
    from prunecli.data.sources import SOURCES

    key = str(name).lower()
    loader = SOURCES.get(key)
    if loader is None:
        close = difflib.get_close_matches(key, list(SOURCES), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise DataError(
            f"unknown data set {name!r}", hint=f"{hint}known data sets: {', '.join(sorted(SOURCES))}"
        )
    if not 0.0 <= float(val_fraction) < 1.0:
        raise DataError(
            f"val_fraction must be in [0, 1), got {val_fraction}", hint="e.g. 0.1 keeps 10% for validation"
        )
    accepted = [
        p for p in inspect.signature(loader).parameters if p not in ("data_dir", "seed", "val_fraction")
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DataError(
            f"data set {key!r} has no option {', '.join(unknown)}",
            hint=f"its options are: {', '.join(accepted)}",
        )
    max_samples = options.get("max_samples")
    if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 1):
        raise DataError(f"max_samples must be a positive integer, got {max_samples!r}")
    return loader(data_dir, seed=int(seed), val_fraction=float(val_fraction), **options)


def __getattr__(name: str):
    # DataBundle and friends pull in torch and torchvision; import them only when asked for
    if name in ("DataBundle", "EpochSampler", "TensorImageDataset"):
        from prunecli.data import bundle

        return getattr(bundle, name)
    raise AttributeError(name)


__all__ = [
    "DATASET_INFO",
    "DataBundle",
    "DatasetInfo",
    "EpochSampler",
    "TensorImageDataset",
    "available_datasets",
    "dataset_info",
    "load_dataset",
]
