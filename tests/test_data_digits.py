"""The embedded digits set, split and shuffling reproducibility, and load_dataset's argument checks."""

from __future__ import annotations

import pytest
import torch

from prunecli.data import EpochSampler, load_dataset
from prunecli.errors import DataError


def _indices(split) -> list[int]:
    """Indices of a (possibly nested) Subset in the underlying full data set."""
    idx = list(range(len(split)))
    while hasattr(split, "indices"):
        idx = [split.indices[i] for i in idx]
        split = split.dataset
    return idx


def test_digits_splits_are_disjoint_complete_and_seeded() -> None:
    b = load_dataset("digits", seed=3, val_fraction=0.1)
    tr, va, te = _indices(b.train), _indices(b.val), _indices(b.test)
    assert len(tr) + len(va) + len(te) == 1797
    assert len(set(tr) | set(va) | set(te)) == 1797
    assert len(te) == round(1797 * 0.2) and len(va) == round((1797 - len(te)) * 0.1)
    assert b.num_classes == 10 and b.input_shape == (1, 8, 8)
    again = load_dataset("digits", seed=3)
    assert _indices(again.test) == te and _indices(again.val) == va
    other = load_dataset("digits", seed=4)
    assert _indices(other.test) != te


def test_digits_values_are_normalised() -> None:
    b = load_dataset("digits")
    x = torch.stack([b.train[i][0] for i in range(len(b.train))])
    assert x.shape[1:] == (1, 8, 8) and x.dtype == torch.float32
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1.0) < 0.05
    labels = {b.train[i][1] for i in range(len(b.train))}
    assert labels == set(range(10))


def test_max_samples_and_val_fraction_zero() -> None:
    b = load_dataset("digits", val_fraction=0.0, max_samples=50)
    assert b.sizes() == {"train": 50, "val": 0, "test": 50}


def _epoch_order(loader) -> list[int]:
    return [int(y) for _, ys in loader for y in ys]


def test_shuffling_depends_only_on_seed_and_epoch() -> None:
    b = load_dataset("digits", max_samples=64)
    first, _, _ = b.loaders(8, seed=5)
    epochs = [_epoch_order(first) for _ in range(3)]
    assert epochs[0] != epochs[1]  # a new order each epoch
    resumed, _, _ = b.loaders(8, seed=5)
    resumed.sampler.set_epoch(2)  # a run resumed at epoch 2
    assert _epoch_order(resumed) == epochs[2]
    fresh, _, _ = b.loaders(8, seed=5)
    assert _epoch_order(fresh) == epochs[0]
    other, _, _ = b.loaders(8, seed=6)
    assert _epoch_order(other) != epochs[0]
    # the order is a permutation: every sample once per epoch
    assert sorted(EpochSampler(64, seed=1).order(7)) == list(range(64))


def test_val_and_test_loaders_do_not_shuffle() -> None:
    b = load_dataset("digits", max_samples=40)
    _, val, test = b.loaders(16)
    assert _epoch_order(test) == _epoch_order(test) == [b.test[i][1] for i in range(len(b.test))]
    assert len(val.dataset) == len(b.val)


def test_argument_errors() -> None:
    with pytest.raises(DataError) as err:
        load_dataset("cifar")
    assert "unknown data set" in err.value.message and "cifar10" in err.value.hint
    with pytest.raises(DataError) as err:
        load_dataset("digits", image_size=32)
    assert "image_size" in err.value.message and "max_samples" in err.value.hint
    with pytest.raises(DataError, match="val_fraction"):
        load_dataset("digits", val_fraction=1.5)
    with pytest.raises(DataError, match="max_samples"):
        load_dataset("digits", max_samples=0)


def test_worker_processes_see_the_same_order() -> None:
    b = load_dataset("digits", max_samples=48)
    single, _, _ = b.loaders(8, workers=0, seed=1)
    multi, _, _ = b.loaders(8, workers=2, seed=1)
    assert _epoch_order(single) == _epoch_order(multi)
