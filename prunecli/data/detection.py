"""Object-detection data sets: images with boxes, labels and instance masks, as torchvision's
detection models (Mask R-CNN, Faster R-CNN) take them.

An item is ``(image, target)``: a float image ``(3, H, W)`` in [0, 1] and a target dict with
``boxes`` (N, 4) as ``x1, y1, x2, y2`` pixels, ``labels`` (N,) int64 in ``1 .. num_classes - 1``
(0 is the background) and ``masks`` (N, H, W) uint8. Batches are tuples of images and of
targets (images may differ in size), so the loaders use :func:`collate_detection`.

Two sources:

* ``fake_detection`` -- random images, each with 1-3 random boxes whose masks fill an ellipse
  inside the box; deterministic per seed and index (no files; for smoke runs and tests);
* ``detection`` -- a directory with ``annotations.json`` in COCO's layout (``images`` with
  ``id``/``file_name``, ``annotations`` with ``image_id``, ``bbox`` as ``[x, y, width, height]``
  and ``category_id``) and the image files next to it. Instance masks are the filled boxes
  (segmentation polygons are not read). Every annotation must have a box and the data set must
  hold at least one, since the detection losses need them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch.utils.data import DataLoader, Dataset

from prunecli.data.bundle import DataBundle, EpochSampler, split_indices, subset
from prunecli.errors import DataError, SourceLocation

Target = dict[str, torch.Tensor]
DETECTION_HOW = (
    "put annotations.json (COCO layout: images, annotations with bbox [x, y, w, h] and "
    "category_id) and the image files it names in that directory"
)


def collate_detection(batch: Sequence[tuple[torch.Tensor, Target]]) -> tuple[tuple, tuple]:
    """(images, targets) as tuples: detection images need not share a size."""
    images, targets = zip(*batch)
    return tuple(images), tuple(targets)


def box_masks(boxes: torch.Tensor, height: int, width: int, *, ellipse: bool = False) -> torch.Tensor:
    """(N, H, W) uint8 masks filling each box (or the ellipse inscribed in it)."""
    ys = torch.arange(height, dtype=torch.float32).view(-1, 1) + 0.5
    xs = torch.arange(width, dtype=torch.float32).view(1, -1) + 0.5
    masks = torch.zeros(len(boxes), height, width, dtype=torch.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        if ellipse:
            cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, max((x2 - x1) / 2, 0.5), max((y2 - y1) / 2, 0.5)
            inside = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1
        else:
            inside = (xs >= x1) & (xs <= x2) & (ys >= y1) & (ys <= y2)
        masks[i] = inside.to(torch.uint8)
    return masks


class FakeDetectionDataset(Dataset):
    """Random images with 1-3 random boxes each, a pure function of (seed, index)."""

    def __init__(self, size: int, image_size: int, num_classes: int, seed: int) -> None:
        self.size, self.image_size, self.num_classes, self.seed = size, image_size, num_classes, seed

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} images")
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        side = self.image_size
        count = int(torch.randint(1, 4, (1,), generator=g))
        corners = torch.rand(count, 2, generator=g) * (side * 0.6)
        sizes = torch.rand(count, 2, generator=g) * (side * 0.3) + side * 0.1
        boxes = torch.cat([corners, corners + sizes], dim=1).clamp(max=side - 1)
        labels = torch.randint(1, self.num_classes, (count,), generator=g)
        image = torch.rand(3, side, side, generator=g)
        return image, {"boxes": boxes, "labels": labels, "masks": box_masks(boxes, side, side, ellipse=True)}


@dataclass
class DetectionBundle(DataBundle):
    """Detection splits; ``num_classes`` counts the background class; loaders collate as tuples."""

    task: str = "detection"

    def loaders(
        self, batch_size: int, workers: int = 0, seed: int = 0
    ) -> tuple[DataLoader, DataLoader, DataLoader]:
        generator = torch.Generator()
        sampler = EpochSampler(len(self.train), seed=seed, generator=generator)
        common: dict[str, Any] = {
            "batch_size": batch_size,
            "num_workers": workers,
            "collate_fn": collate_detection,
        }
        return (
            DataLoader(self.train, sampler=sampler, generator=generator, **common),
            DataLoader(self.val, shuffle=False, **common),
            DataLoader(self.test, shuffle=False, **common),
        )


def _bundle(name: str, train: Dataset, test: Dataset, *, num_classes: int, side: int, seed: int,
            val_fraction: float, max_samples: int | None, info: dict) -> DetectionBundle:  # fmt: skip
    from prunecli.data.sources import _finish  # sources registers this module's loaders

    bundle = _finish(  # built as bundle_type
        name, train, train, test, num_classes=num_classes, input_shape=(3, side, side), seed=seed,
        val_fraction=val_fraction, max_samples=max_samples, info=info, bundle_type=DetectionBundle,
    )  # fmt: skip
    return cast(DetectionBundle, bundle)


def load_fake_detection(
    data_dir=None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    size: int = 16,
    image_size: int = 64,
    num_classes: int = 3,
    max_samples: int | None = None,
) -> DetectionBundle:
    """Random detection data (see the module doc); ``num_classes`` includes the background."""
    if size < 1 or image_size < 16 or num_classes < 2:
        raise DataError(
            "fake_detection: size must be positive, image_size at least 16 and num_classes at least 2 "
            f"(got {size}, {image_size}, {num_classes})",
            hint="num_classes counts the background class, so 2 means one object class",
        )
    train = FakeDetectionDataset(size, image_size, num_classes, seed=2 * seed)
    test = FakeDetectionDataset(max(size // 4, 1), image_size, num_classes, seed=2 * seed + 1)
    return _bundle(
        "fake_detection", train, test, num_classes=num_classes, side=image_size, seed=seed,
        val_fraction=val_fraction, max_samples=max_samples, info={"source": "random images and boxes"},
    )  # fmt: skip


# ------------------------------------------------------------------------------ COCO-style files


class CocoBoxesDataset(Dataset):
    """Images named by a COCO-style annotation file, with their boxes (checked when loaded)."""

    def __init__(
        self, root: str, images: list[dict], boxes: dict[Any, list[tuple[list[float], int]]]
    ) -> None:
        self.root, self.images, self.boxes = root, images, boxes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        from torchvision.io import ImageReadMode, read_image

        entry = self.images[index]
        path = os.path.join(self.root, entry["file_name"])
        try:
            image = read_image(path, mode=ImageReadMode.RGB).float() / 255
        except (OSError, RuntimeError) as exc:
            raise DataError(f"cannot read image {path}: {exc}", location=SourceLocation(path)) from None
        found = self.boxes.get(entry["id"], [])
        boxes = torch.tensor([[x, y, x + w, y + h] for (x, y, w, h), _ in found], dtype=torch.float32).view(
            -1, 4
        )
        labels = torch.tensor([label for _, label in found], dtype=torch.int64)
        height, width = image.shape[-2:]
        return image, {"boxes": boxes, "labels": labels, "masks": box_masks(boxes, height, width)}


def _read_annotations(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist", location=SourceLocation(path), hint=DETECTION_HOW) from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"not valid JSON: {exc.msg}",
            location=SourceLocation(path, exc.lineno, exc.colno),
            hint=DETECTION_HOW,
        ) from None


def _boxes_by_image(path: str, data: dict) -> tuple[dict[Any, list[tuple[list[float], int]]], dict[int, int]]:
    """image id -> [(bbox, label)], and category id -> label (1-based, in sorted category order)."""
    annotations = data.get("annotations")
    if not isinstance(annotations, list) or not annotations:
        raise DataError(
            "the detection data set has no boxes: 'annotations' is missing or empty",
            location=SourceLocation(path),
            hint="detection training needs at least one annotation with a bbox [x, y, width, height]",
        )
    categories = sorted({a.get("category_id") for a in annotations if isinstance(a, dict)}, key=str)
    label_of = {c: i + 1 for i, c in enumerate(categories)}
    out: dict[Any, list[tuple[list[float], int]]] = {}
    for index, ann in enumerate(annotations):
        box = ann.get("bbox") if isinstance(ann, dict) else None
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float) for v in box)):
            raise DataError(
                f"annotations[{index}] has no box (bbox must be [x, y, width, height], got {box!r})",
                location=SourceLocation(path),
                hint="give every annotation a bbox, or remove the annotations without one",
            )
        if box[2] <= 0 or box[3] <= 0:
            raise DataError(
                f"annotations[{index}] has an empty box {box} (width and height must be positive)",
                location=SourceLocation(path),
                hint="fix or remove that annotation",
            )
        out.setdefault(ann.get("image_id"), []).append((list(box), label_of[ann.get("category_id")]))
    return out, label_of


def load_detection(
    data_dir=None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    image_size: int = 800,
    max_samples: int | None = None,
) -> DetectionBundle:
    """COCO-style boxes (see the module doc); ``image_size`` is the example input side for MACs."""
    from prunecli.data.sources import require_dir  # sources registers this loader

    root = require_dir(data_dir, "detection", "annotations.json and its images", DETECTION_HOW)
    path = os.path.join(root, "annotations.json")
    data = _read_annotations(path)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not images:
        raise DataError("no 'images' list", location=SourceLocation(path), hint=DETECTION_HOW)
    boxes, label_of = _boxes_by_image(path, data)
    dataset = CocoBoxesDataset(root, images, boxes)
    train_idx, test_idx = split_indices(len(dataset), 0.2 if len(dataset) > 1 else 0.0, seed + 1)
    return _bundle(
        "detection", subset(dataset, train_idx), subset(dataset, test_idx or train_idx),
        num_classes=len(label_of) + 1, side=image_size, seed=seed, val_fraction=val_fraction,
        max_samples=max_samples, info={"source": root, "categories": len(label_of)},
    )  # fmt: skip
