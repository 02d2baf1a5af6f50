"""Each real file format, written tiny into tmp_path and read back through the real loaders."""

from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from prunecli.data import load_dataset
from prunecli.data.idx import read_idx
from prunecli.errors import DataError

# ------------------------------------------------------------------------------------------ MNIST


def write_idx(path, array: np.ndarray, *, gz: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def make_mnist(root, *, n_train: int = 20, n_test: int = 6, gz: bool = False, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        write_idx(root / name, arr, gz=gz)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_round_trip(tmp_path, gz: bool) -> None:
    arrays = make_mnist(tmp_path, gz=gz)
    b = load_dataset("mnist", tmp_path, val_fraction=0.25, seed=1)
    assert b.sizes() == {"train": 15, "val": 5, "test": 6}
    assert b.num_classes == 10 and b.input_shape == (1, 28, 28)
    x, y = b.test[2]
    assert y == 6 and x.shape == (1, 28, 28)
    expected = (
        torch.tensor(arrays["t10k-images-idx3-ubyte"][2], dtype=torch.float32) / 255 - 0.1307
    ) / 0.3081
    assert torch.allclose(x[0], expected, atol=1e-5)


def test_mnist_in_torchvision_raw_layout(tmp_path) -> None:
    make_mnist(tmp_path / "MNIST" / "raw", n_train=10, n_test=4)
    assert load_dataset("mnist", tmp_path, val_fraction=0.0).sizes() == {"train": 10, "val": 0, "test": 4}


def test_idx_reader_shape_and_types(tmp_path) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", arr)
    assert np.array_equal(read_idx(str(tmp_path / "a")), arr)


def test_corrupted_idx_header_names_the_file(tmp_path) -> None:
    make_mnist(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x1f\x8b" + bad.read_bytes()[2:])  # wrong magic
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path)
    assert str(bad) in err.value.message and "magic" in err.value.message
    truncated = tmp_path / "t10k-images-idx3-ubyte"
    make_mnist(tmp_path)
    truncated.write_bytes(truncated.read_bytes()[:-10])
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path)
    assert str(truncated) in err.value.message and "holds" in err.value.message


def test_mnist_label_count_mismatch(tmp_path) -> None:
    make_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(7, dtype=np.uint8))
    with pytest.raises(DataError, match="7 labels for 20 images"):
        load_dataset("mnist", tmp_path)


def test_mnist_missing_files_say_which_and_how(tmp_path) -> None:
    make_mnist(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path)
    assert "t10k-labels-idx1-ubyte" in err.value.message and str(tmp_path) in err.value.message
    assert "download" in err.value.hint


# ------------------------------------------------------------------------------------------ CIFAR


def write_batch(path, data: np.ndarray, labels: list[int], label_key: bytes) -> None:
    # protocol 2, as the published Python 2 files (and bytes pickled via _codecs.encode)
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"tiny", b"data": data, label_key: labels}, f, protocol=2)


def make_cifar(root, variant: str, per_batch: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if variant == "cifar10":
        folder, train, test, key, classes = (
            "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)],
            "test_batch",
            b"labels",
            10,
        )
    else:
        folder, train, test, key, classes = "cifar-100-python", ["train"], "test", b"fine_labels", 100
    path = root / folder
    path.mkdir(parents=True)
    first = None
    for name in [*train, test]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, classes, per_batch)]
        write_batch(path / name, data, labels, key)
        first = data if first is None else first
    if variant == "cifar10":
        with open(path / "batches.meta", "wb") as f:
            pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f, protocol=2)
    return first


def test_cifar10_batches(tmp_path) -> None:
    first = make_cifar(tmp_path, "cifar10")
    b = load_dataset("cifar10", tmp_path, val_fraction=0.2, augment=False)
    assert b.sizes() == {"train": 16, "val": 4, "test": 4}
    assert b.num_classes == 10 and b.input_shape == (3, 32, 32) and b.classes[:2] == ["c0", "c1"]
    # the first training image, undone from CHW-planes layout and normalisation
    full = b.train.dataset.dataset if hasattr(b.train.dataset, "dataset") else b.train.dataset
    x, _ = full[0]
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(3, 1, 1)
    restored = (x * std + mean) * 255
    assert torch.allclose(restored, torch.tensor(first[0], dtype=torch.float32).view(3, 32, 32), atol=1e-3)


def test_cifar_train_augmentation_keeps_shape(tmp_path) -> None:
    make_cifar(tmp_path, "cifar10")
    b = load_dataset("cifar10", tmp_path)
    x, _ = b.train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32


def test_cifar100_batches_in_given_dir(tmp_path) -> None:
    make_cifar(tmp_path, "cifar100", per_batch=10)
    b = load_dataset("cifar100", tmp_path / "cifar-100-python", val_fraction=0.0, max_samples=8)
    assert b.num_classes == 100 and b.sizes() == {"train": 8, "val": 0, "test": 8}


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_cifar_unpickler_refuses_anything_but_numpy(tmp_path, monkeypatch) -> None:
    make_cifar(tmp_path, "cifar10")
    target = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    with open(target, "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [0]}, f, protocol=2)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", tmp_path)
    assert str(target) in err.value.message and "refusing" in err.value.message
    assert not (tmp_path / "pwned").exists()


def test_cifar_wrong_shape_names_file(tmp_path) -> None:
    make_cifar(tmp_path, "cifar10")
    target = tmp_path / "cifar-10-batches-py" / "test_batch"
    write_batch(target, np.zeros((2, 100), dtype=np.uint8), [0, 1], b"labels")
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", tmp_path)
    assert str(target) in err.value.message


def test_cifar_missing_files(tmp_path) -> None:
    make_cifar(tmp_path, "cifar10")
    os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_5")
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", tmp_path)
    assert "data_batch_5" in err.value.message and "cifar-10-python.tar.gz" in err.value.hint


# ------------------------------------------------------------------------------------ ImageFolder


def make_image_tree(root, classes=("cat", "dog", "emu"), per_class: int = 3, size: int = 20) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)).save(
                    d / f"{i}.png"
                )


def test_imagefolder_tree(tmp_path) -> None:
    make_image_tree(tmp_path)
    b = load_dataset("imagefolder", tmp_path, image_size=16, val_fraction=1 / 9)
    assert b.classes == ["cat", "dog", "emu"] and b.num_classes == 3
    assert b.sizes() == {"train": 8, "val": 1, "test": 9}
    assert b.input_shape == (3, 16, 16)
    x, y = b.test[4]
    assert x.shape == (3, 16, 16) and y == 1
    xt, _ = b.train[0]
    assert xt.shape == (3, 16, 16)
    assert b.val.dataset.transform is not b.train.dataset.transform  # no augmentation in val
    small = load_dataset("imagefolder", tmp_path, image_size=16, max_samples=3)
    assert sorted(small.test[i][1] for i in range(3)) == [0, 1, 2]  # spread over the classes
    train, _, _ = b.loaders(4)
    xb, yb = next(iter(train))
    assert xb.shape == (4, 3, 16, 16)


def test_imagefolder_needs_train_and_val(tmp_path) -> None:
    make_image_tree(tmp_path)
    os.rename(tmp_path / "val", tmp_path / "holdout")
    with pytest.raises(DataError) as err:
        load_dataset("imagefolder", tmp_path)
    assert str(tmp_path) in err.value.message and "val/" in err.value.message


def test_imagefolder_without_images(tmp_path) -> None:
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "val" / "cat").mkdir(parents=True)
    with pytest.raises(DataError) as err:
        load_dataset("imagefolder", tmp_path)
    assert "train" in err.value.message


# ----------------------------------------------------------------------------------- fake and dirs


def test_fake_any_shape_and_classes() -> None:
    b = load_dataset("fake", size=30, image_size=[1, 12, 10], num_classes=4, val_fraction=0.1)
    assert b.sizes() == {"train": 27, "val": 3, "test": 6}
    assert b.input_shape == (1, 12, 10) and b.num_classes == 4
    x, y = b.train[0]
    assert x.shape == (1, 12, 10) and 0 <= y < 4
    again = load_dataset("fake", size=30, image_size=[1, 12, 10], num_classes=4, val_fraction=0.1)
    assert torch.equal(again.train[0][0], x)  # deterministic
    with pytest.raises(DataError, match="image_size"):
        load_dataset("fake", image_size=[5, 8, 8])


def test_fake_items_depend_on_seed_and_index_only() -> None:
    a = load_dataset("fake", size=40, num_classes=5, seed=1).train.dataset
    torch.manual_seed(123)  # the global random state plays no part
    late = [a[i] for i in (7, 3, 7)]
    torch.manual_seed(0)
    assert torch.equal(late[0][0], late[2][0]) and late[0][1] == late[2][1]
    assert torch.equal(a[3][0], late[1][0])
    images = torch.stack([a[i][0] for i in range(len(a))])
    assert images.min() >= 0 and images.max() < 1
    assert abs(images.mean().item() - 0.5) < 0.01  # uniform: mean 1/2 over 40 * 3 * 32 * 32 pixels
    assert len({a[i][1] for i in range(len(a))}) == 5  # every class drawn
    other = load_dataset("fake", size=40, num_classes=5, seed=2)
    assert not torch.equal(other.train.dataset[3][0], a[3][0])
    test_split = load_dataset("fake", size=40, seed=1).test
    assert not torch.equal(test_split[0][0], a[0][0])  # the test split draws from another stream


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "imagefolder"])
def test_missing_and_empty_directories(tmp_path, name: str) -> None:
    with pytest.raises(DataError) as err:
        load_dataset(name, None)
    assert "needs a data directory" in err.value.message
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        load_dataset(name, missing)
    assert str(missing) in err.value.message and "does not exist" in err.value.message
    assert err.value.hint
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as err:
        load_dataset(name, empty)
    assert str(empty) in err.value.message and "empty" in err.value.message
    assert err.value.exit_code == 2
