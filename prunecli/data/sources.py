"""One loader per data set, registered in :data:`SOURCES` by name.

Each loader returns a :class:`DataBundle`; the validation split is carved from the training
files by ``seed`` (with evaluation transforms, never augmentation), the test split is the
data set's own test files (digits, which has none, gets a seeded test split too).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from prunecli.data.bundle import (
    DataBundle,
    RandomImageDataset,
    TensorImageDataset,
    limit,
    split_indices,
    subset,
)
from prunecli.data.cifar_pickle import load_batch
from prunecli.data.detection import load_detection, load_fake_detection
from prunecli.data.idx import read_idx
from prunecli.data.info import STATS
from prunecli.data.text import load_text
from prunecli.errors import DataError


def require_dir(data_dir: str | os.PathLike | None, dataset: str, expected: str, how: str) -> str:
    """The data directory, checked to exist and hold something; DataError saying what goes there."""
    if data_dir is None:
        raise DataError(
            f"data set {dataset!r} needs a data directory",
            hint=f"pass the directory holding {expected}; {how}",
        )
    path = os.fspath(data_dir)
    if not os.path.isdir(path):
        raise DataError(f"data directory {path} does not exist", hint=f"it should hold {expected}; {how}")
    if not os.listdir(path):
        raise DataError(f"data directory {path} is empty", hint=f"it should hold {expected}; {how}")
    return path


def _finish(
    name: str,
    train_aug: Dataset,
    train_eval: Dataset,
    test: Dataset,
    *,
    num_classes: int,
    input_shape: tuple[int, int, int],
    seed: int,
    val_fraction: float,
    max_samples: int | None,
    classes: list[str] | None = None,
    info: dict | None = None,
    bundle_type: type[DataBundle] = DataBundle,
) -> DataBundle:
    """Cut the validation split from the training data and apply the smoke-run size limit."""
    train_idx, val_idx = split_indices(len(train_aug), val_fraction, seed)
    bundle = bundle_type(
        name=name,
        train=limit(subset(train_aug, train_idx), max_samples),
        val=limit(subset(train_eval, val_idx), max_samples),
        test=limit(test, max_samples),
        num_classes=num_classes,
        input_shape=input_shape,
        classes=classes,
        info=dict(info or {}),
    )
    bundle.info.update(seed=seed, val_fraction=val_fraction, max_samples=max_samples, sizes=bundle.sizes())
    return bundle


# ----------------------------------------------------------------------------------------- digits


def load_digits_set(
    data_dir=None, *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2, max_samples=None
) -> DataBundle:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes): works offline, no files needed."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    mean, std = STATS["digits"]
    images = (torch.tensor(raw.images, dtype=torch.float32) / 16.0 - mean[0]) / std[0]
    full = TensorImageDataset(images.unsqueeze(1), torch.tensor(raw.target, dtype=torch.long))
    rest, test_idx = split_indices(len(full), test_fraction, seed)
    train_all = subset(full, rest)
    return _finish(
        "digits",
        train_all,
        train_all,
        subset(full, test_idx),
        num_classes=10,
        input_shape=(1, 8, 8),
        seed=seed + 1,
        val_fraction=val_fraction,
        max_samples=max_samples,
        classes=[str(i) for i in range(10)],
        info={"source": "sklearn.datasets.load_digits", "test_fraction": test_fraction},
    )


# ------------------------------------------------------------------------------------------ MNIST

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_HOW = "download the four IDX files (gzipped is fine) from http://yann.lecun.com/exdb/mnist/ or a mirror"


def _find_mnist(root: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for folder in (root, os.path.join(root, "raw"), os.path.join(root, "MNIST", "raw")):
        for key, base in MNIST_FILES.items():
            for candidate in (base, base + ".gz", base.replace("-idx", ".idx")):
                path = os.path.join(folder, candidate)
                if key not in found and os.path.isfile(path):
                    found[key] = path
    missing = [MNIST_FILES[k] for k in MNIST_FILES if k not in found]
    if missing:
        raise DataError(
            f"MNIST files missing in {root}: {', '.join(missing)}",
            hint=f"{MNIST_HOW}, into {root}",
        )
    return found


def _mnist_pair(images_path: str, labels_path: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"{images_path}: expected a 3-D image array, found shape {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{labels_path}: {labels.shape[0] if labels.ndim else 0} labels for {images.shape[0]} images "
            f"in {os.path.basename(images_path)}",
            hint="the image and label files come from different downloads; fetch both again",
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{labels_path}: labels outside 0..9", hint="download the file again")
    return (
        torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
    )


def load_mnist(data_dir=None, *, seed: int = 0, val_fraction: float = 0.1, max_samples=None) -> DataBundle:
    from prunecli.data import transforms as T

    root = require_dir(data_dir, "mnist", ", ".join(MNIST_FILES.values()), MNIST_HOW)
    files = _find_mnist(root)
    train_x, train_y = _mnist_pair(files["train_images"], files["train_labels"])
    test_x, test_y = _mnist_pair(files["test_images"], files["test_labels"])
    tf = T.tensor_eval("mnist")
    train = TensorImageDataset(train_x, train_y, tf)
    return _finish(
        "mnist",
        train,
        train,
        TensorImageDataset(test_x, test_y, tf),
        num_classes=10,
        input_shape=(1, *train_x.shape[2:]),
        seed=seed,
        val_fraction=val_fraction,
        max_samples=max_samples,
        classes=[str(i) for i in range(10)],
        info={"source": root},
    )


# ------------------------------------------------------------------------------------------ CIFAR

CIFAR = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "labels": "labels",
        "meta": ("batches.meta", "label_names"),
        "classes": 10,
        "archive": "cifar-10-python.tar.gz",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "labels": "fine_labels",
        "meta": ("meta", "fine_label_names"),
        "classes": 100,
        "archive": "cifar-100-python.tar.gz",
    },
}


def _cifar_how(variant: str) -> str:
    archive = CIFAR[variant]["archive"]
    return f"download {archive} (the python version) from https://www.cs.toronto.edu/~kriz/cifar.html and extract it there"


def _cifar_batches(
    path: str, names: list[str], label_key: str, classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in names:
        file = os.path.join(path, name)
        batch = load_batch(file)
        data, y = batch.get("data"), batch.get(label_key)
        if not isinstance(data, np.ndarray) or y is None:
            raise DataError(
                f"{file}: missing 'data' or {label_key!r} entry", hint="extract the archive again"
            )
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(y) != data.shape[0]:
            raise DataError(
                f"{file}: expected N x 3072 pixel rows and N labels, found {data.shape} and {len(y)} labels",
                hint="extract the archive again",
            )
        y = np.asarray(y, dtype=np.int64)
        if y.size and (y.min() < 0 or y.max() >= classes):
            raise DataError(
                f"{file}: labels outside 0..{classes - 1}", hint="is this the right CIFAR variant?"
            )
        images.append(data.astype(np.uint8).reshape(-1, 3, 32, 32))
        labels.append(y)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def _class_names(path: str, meta: tuple[str, str]) -> list[str] | None:
    file = os.path.join(path, meta[0])
    if not os.path.isfile(file):
        return None
    names = load_batch(file).get(meta[1])
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names] if names else None


def _load_cifar(
    variant: str, data_dir, seed: int, val_fraction: float, max_samples, augment: bool
) -> DataBundle:
    from prunecli.data import transforms as T

    spec = CIFAR[variant]
    expected = f"{spec['folder']}/ with {', '.join(spec['train'] + spec['test'])}"
    root = require_dir(data_dir, variant, expected, _cifar_how(variant))
    path = os.path.join(root, spec["folder"])
    if not os.path.isdir(path):
        path = root  # the batch files may sit directly in the given directory
    missing = [n for n in spec["train"] + spec["test"] if not os.path.isfile(os.path.join(path, n))]
    if missing:
        raise DataError(
            f"{variant} files missing in {path}: {', '.join(missing)}",
            hint=f"{_cifar_how(variant)} (it creates {spec['folder']}/ in {root})",
        )
    train_x, train_y = _cifar_batches(path, spec["train"], spec["labels"], spec["classes"])
    test_x, test_y = _cifar_batches(path, spec["test"], spec["labels"], spec["classes"])
    eval_tf = T.tensor_eval(variant)
    train_tf = T.cifar_train(variant) if augment else eval_tf
    return _finish(
        variant,
        TensorImageDataset(train_x, train_y, train_tf),
        TensorImageDataset(train_x, train_y, eval_tf),
        TensorImageDataset(test_x, test_y, eval_tf),
        num_classes=spec["classes"],
        input_shape=(3, 32, 32),
        seed=seed,
        val_fraction=val_fraction,
        max_samples=max_samples,
        classes=_class_names(path, spec["meta"]),
        info={"source": path, "augment": augment},
    )


def load_cifar10(
    data_dir=None, *, seed: int = 0, val_fraction: float = 0.1, max_samples=None, augment: bool = True
) -> DataBundle:
    return _load_cifar("cifar10", data_dir, seed, val_fraction, max_samples, augment)


def load_cifar100(
    data_dir=None, *, seed: int = 0, val_fraction: float = 0.1, max_samples=None, augment: bool = True
) -> DataBundle:
    return _load_cifar("cifar100", data_dir, seed, val_fraction, max_samples, augment)


# ------------------------------------------------------------------------------------ ImageFolder

IMAGEFOLDER_HOW = "arrange images as DIR/train/<class>/<image> and DIR/val/<class>/<image> (ImageNet layout)"
VAL_FOLDERS = ("val", "validation", "test")


def _image_folder(path: str, transform) -> Dataset:
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(path, transform=transform)
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"no usable images in {path}: {exc}", hint=IMAGEFOLDER_HOW) from None


def _has_class_folders(root: str) -> bool:
    return any(os.path.isdir(os.path.join(root, entry)) for entry in os.listdir(root))


def load_imagefolder(
    data_dir=None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    image_size: int = 224,
    max_samples=None,
    augment: bool = True,
    transforms: list | None = None,
) -> DataBundle:
    """ImageNet's layout (``DIR/train``, ``DIR/val``), or one folder of class folders.

    A folder of class folders (what Intel LPOT's ``ImageFolder: {root: ...}`` names) is the
    training set; its held-out validation split is the test set too. ``transforms`` is a training
    pipeline as plain data (``[[name, {args}], ...]``, :func:`prunecli.data.transforms.from_spec`);
    evaluation uses its deterministic form.
    """
    from prunecli.data import transforms as T

    root = require_dir(
        data_dir, "imagefolder", "class folders, or train/ and val/ folders of class folders", IMAGEFOLDER_HOW
    )
    train_dir = os.path.join(root, "train")
    test_dir = next(
        (os.path.join(root, v) for v in VAL_FOLDERS if os.path.isdir(os.path.join(root, v))), None
    )
    classes_only = not os.path.isdir(train_dir) and test_dir is None and _has_class_folders(root)
    if classes_only:
        train_dir = test_dir = root
    if not os.path.isdir(train_dir) or test_dir is None:
        raise DataError(
            f"{root} needs both a train/ and a val/ folder",
            hint=IMAGEFOLDER_HOW + ", or pass a folder of class folders",
        )
    if transforms is not None:
        try:
            train_tf, eval_tf = T.from_spec(transforms), T.from_spec(T.eval_spec(transforms))
        except (ValueError, KeyError) as exc:
            raise DataError(
                f"imagefolder transforms: {exc}", hint="see docs/dialects.md for the transforms"
            ) from None
        if not augment:
            train_tf = eval_tf
        image_size = T.spec_size(transforms) or image_size
    else:
        eval_tf = T.imagenet_eval(image_size)
        train_tf = T.imagenet_train(image_size) if augment else eval_tf
    train_aug = _image_folder(train_dir, train_tf)
    test = _image_folder(test_dir, eval_tf)
    if classes_only:
        _, held_out = split_indices(len(train_aug), val_fraction, seed)
        test = subset(test, held_out) if held_out else test
    elif test.classes != train_aug.classes:
        extra = sorted(set(test.classes) ^ set(train_aug.classes))
        raise DataError(
            f"{test_dir} and {train_dir} have different class folders: {', '.join(extra[:5])}",
            hint="both splits need the same set of class folders",
        )
    train_eval = copy.copy(train_aug)  # same file list, scanned once; evaluation transforms
    train_eval.transform = eval_tf
    return _finish(
        "imagefolder",
        train_aug,
        train_eval,
        test,
        num_classes=len(train_aug.classes),
        input_shape=(3, image_size, image_size),
        seed=seed,
        val_fraction=val_fraction,
        max_samples=max_samples,
        classes=list(train_aug.classes),
        info={"source": root, "augment": augment},
    )


# ------------------------------------------------------------------------------------------- fake


def load_fake(
    data_dir=None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    size: int = 256,
    test_size: int | None = None,
    image_size: int | list[int] | tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
    max_samples=None,
) -> DataBundle:
    """Random images of any shape, deterministic per seed and index, for smoke runs and benchmarks."""
    shape = (3, image_size, image_size) if isinstance(image_size, int) else tuple(int(d) for d in image_size)
    if len(shape) != 3 or min(shape) < 1 or shape[0] not in (1, 3):
        raise DataError(
            f"fake data: image_size {image_size!r} is not (C, H, W) with C 1 or 3",
            hint="give image_size as an int (square RGB) or [C, H, W]",
        )
    if size < 1 or num_classes < 1:
        raise DataError("fake data: size and num_classes must be positive")
    train = RandomImageDataset(size, shape, num_classes, seed=2 * seed)
    test = RandomImageDataset(test_size or max(size // 5, 1), shape, num_classes, seed=2 * seed + 1)
    return _finish(
        "fake",
        train,
        train,
        test,
        num_classes=num_classes,
        input_shape=shape,  # type: ignore[arg-type]
        seed=seed,
        val_fraction=val_fraction,
        max_samples=max_samples,
        classes=[str(i) for i in range(num_classes)],
        info={"source": "random images"},
    )


SOURCES: dict[str, Callable[..., DataBundle]] = {
    "digits": load_digits_set,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "imagefolder": load_imagefolder,
    "imagenet": load_imagefolder,
    "fake": load_fake,
    # word-level token files (train/valid/test.txt); the names of the corpora in that format
    "text": load_text,
    "wikitext2": load_text,
    "ptb": load_text,
    # images with boxes, labels and masks, for torchvision's detection models
    "fake_detection": load_fake_detection,
    "detection": load_detection,
}
