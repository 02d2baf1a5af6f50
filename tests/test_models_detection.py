"""Mask R-CNN under Distiller's names, detection data sets, the detection losses, backbone thinning."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import pytest
import torch
import torchvision
from click.testing import CliRunner

from prunecli.cli.main import cli
from prunecli.data import load_dataset
from prunecli.data.detection import box_masks
from prunecli.errors import DataError
from prunecli.models import create_model
from prunecli.models.detection import distiller_layout
from prunecli.training.tasks import DETECTION, DetectionObjective

#: tiny images and few proposals and detections: CPU-cheap, same layers and names
FEW = {
    "min_size": 64, "max_size": 64, "box_batch_size_per_image": 16, "rpn_pre_nms_top_n_train": 100,
    "rpn_post_nms_top_n_train": 50, "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 50,
    "box_detections_per_img": 5,
}  # fmt: skip
SMALL = "&".join(f"{k}={v}" for k, v in FEW.items())
TABLE_ROW = re.compile(r"^#\|\s*\d+ \| (?P<name>[\w.]+)\s*\| \((?P<shape>[\d, ]+)\)", re.M)


def _torchvision_reference() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, **FEW)


def test_names_and_shapes_are_those_of_distillers_table(examples_dir: str) -> None:
    path = os.path.join(examples_dir, "object_detection_compression", "maskrcnn.scheduler_agp.non_parallel.yaml")
    rows = TABLE_ROW.findall(Path(path).read_text())
    assert len(rows) == 74
    with torch.device("meta"):
        model, _ = create_model("maskrcnn_resnet50_fpn")
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    for name, shape in rows:
        assert shapes.get(name) == tuple(int(d) for d in shape.split(",")), name
    assert {n for n, s in shapes.items() if len(s) > 1} == {n for n, _ in rows}  # all weights listed


def test_output_equals_torchvisions_model_and_state_dicts_round_trip() -> None:
    reference = _torchvision_reference().eval()
    model = distiller_layout(copy.deepcopy(reference)).eval()
    images = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(5))]
    with torch.no_grad():
        expected, got = reference(images)[0], model(images)[0]
    assert len(expected["boxes"]) > 0  # random weights still propose boxes: the comparison bites
    for key in ("boxes", "scores", "labels", "masks"):
        assert torch.equal(expected[key], got[key]), key
    # a plain saved state dict (no version metadata) loads back under the same names
    fresh, _ = create_model(f"maskrcnn_resnet50_fpn?{SMALL}")
    fresh.load_state_dict({k: v.clone() for k, v in model.state_dict().items()})
    assert "rpn.head.conv.weight" in fresh.state_dict()


def test_pretrained_weights_are_refused() -> None:
    from prunecli.errors import ModelError

    with pytest.raises(ModelError, match="never does"):
        create_model("maskrcnn_resnet50_fpn?weights_backbone=DEFAULT")


def test_fake_detection_data_is_deterministic_and_consistent() -> None:
    a = load_dataset("fake_detection", size=6, image_size=48, num_classes=5)
    b = load_dataset("fake_detection", size=6, image_size=48, num_classes=5)
    assert a.task == "detection" and a.num_classes == 5 and a.input_shape == (3, 48, 48)
    image, target = a.train[0]
    image_b, target_b = b.train[0]
    assert torch.equal(image, image_b) and torch.equal(target["boxes"], target_b["boxes"])
    boxes = target["boxes"]
    assert boxes.shape[1] == 4 and 1 <= len(boxes) <= 3
    assert bool((boxes[:, 2:] > boxes[:, :2]).all()) and float(boxes.max()) <= 47
    assert bool(((target["labels"] >= 1) & (target["labels"] < 5)).all())
    masks = target["masks"]
    assert masks.shape == (len(boxes), 48, 48) and masks.dtype == torch.uint8
    for box, mask in zip(boxes, masks):  # every mask pixel lies inside its box
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert len(xs) > 0
        assert float(xs.min()) >= float(box[0]) - 1 and float(xs.max()) <= float(box[2])
        assert float(ys.min()) >= float(box[1]) - 1 and float(ys.max()) <= float(box[3])
    images, targets = next(iter(a.loaders(2)[0]))
    assert len(images) == len(targets) == 2


def test_box_masks_fill_exactly_the_box() -> None:
    mask = box_masks(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), 6, 6)[0]
    # pixel centres x + 0.5 in [1, 3] and y + 0.5 in [2, 4]: columns 1-2, rows 2-3
    assert torch.nonzero(mask).tolist() == [[2, 1], [2, 2], [3, 1], [3, 2]]


def _coco(root: Path, annotations: list) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    torchvision.io.write_png(torch.zeros(3, 32, 32, dtype=torch.uint8), str(root / "a.png"))
    data = {"images": [{"id": 1, "file_name": "a.png"}], "annotations": annotations}
    (root / "annotations.json").write_text(json.dumps(data))
    return root


def test_coco_style_boxes_load_as_targets(tmp_path: Path) -> None:
    root = _coco(tmp_path, [{"image_id": 1, "bbox": [2, 3, 10, 5], "category_id": 7}])
    bundle = load_dataset("detection", root, image_size=32, val_fraction=0.0)
    image, target = bundle.train[0]
    assert image.shape == (3, 32, 32) and bundle.num_classes == 2
    assert target["boxes"].tolist() == [[2.0, 3.0, 12.0, 8.0]] and target["labels"].tolist() == [1]
    assert int(target["masks"].sum()) == 10 * 5


def test_detection_data_without_boxes_exits_2(tmp_path: Path) -> None:
    no_box = _coco(tmp_path / "a", [{"image_id": 1, "category_id": 1}])
    with pytest.raises(DataError, match=r"annotations\[0\] has no box"):
        load_dataset("detection", no_box)
    empty = _coco(tmp_path / "b", [])
    result = CliRunner().invoke(
        cli,
        ["run", "--model", "maskrcnn_resnet50_fpn", "--dataset", "detection", "--data-dir", str(empty),
         "--epochs", "1", "--out-dir", str(tmp_path / "run")],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    text = "".join(result.output.split())
    assert "annotations.json" in text and "hasnoboxes" in text and "Traceback" not in result.output


def test_training_step_minimises_the_sum_of_the_detection_losses() -> None:
    torch.manual_seed(0)
    model, _ = create_model(f"maskrcnn_resnet50_fpn?num_classes=3&{SMALL}")
    batch = next(iter(load_dataset("fake_detection", size=2, val_fraction=0.0).loaders(2)[0]))
    model.train()
    torch.manual_seed(1)
    loss, size = DetectionObjective().loss(model, batch, torch.device("cpu"))
    torch.manual_seed(1)  # the samplers of proposals draw from the global generator
    parts = model(list(batch[0]), list(batch[1]))
    assert set(parts) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    assert size == 2 and float(loss) == pytest.approx(float(sum(parts.values())), rel=1e-5)
    # evaluation leaves BatchNorm's running statistics as they were
    before = model.backbone.body.bn1.running_mean.clone()
    stats = DETECTION.evaluate(model, [batch], torch.device("cpu"), None)
    assert torch.equal(before, model.backbone.body.bn1.running_mean)
    assert stats.top1 is None and stats.samples == 2 and stats.loss > 0


def _assert_same_detections(expected: dict, got: dict) -> None:
    assert len(expected["boxes"]) > 0
    assert torch.equal(expected["labels"], got["labels"])
    for key, atol in (("boxes", 1e-3), ("scores", 1e-5), ("masks", 1e-4)):  # boxes in pixels
        assert torch.allclose(expected[key], got[key], atol=atol), key


def test_backbone_thins_and_the_detector_output_is_unchanged() -> None:
    from prunecli.thinning import thin_model

    torch.manual_seed(0)
    model, _ = create_model(f"maskrcnn_resnet50_fpn?{SMALL}")
    model.eval()
    body = model.backbone.body
    with torch.no_grad():
        body.layer1[0].conv1.weight[:40] = 0  # 40 of 64 filters, and their BatchNorm shifts
        body.layer1[0].bn1.bias[:40] = 0
        body.layer3[1].conv2.weight[:128] = 0
        body.layer3[1].bn2.bias[:128] = 0
    images = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(3))]
    with torch.no_grad():
        expected = model(images)[0]
    recipe = thin_model(body, torch.zeros(1, 3, 64, 64), verify=True)
    assert tuple(body.layer1[0].conv1.weight.shape) == (24, 64, 1, 1)
    assert tuple(body.layer1[0].conv2.weight.shape) == (64, 24, 3, 3)
    assert tuple(body.layer3[1].conv2.weight.shape) == (128, 256, 3, 3)
    assert set(recipe.under("backbone.body").tensors) >= {"backbone.body.layer1.0.conv1.weight"}
    with torch.no_grad():
        got = model(images)[0]
    _assert_same_detections(expected, got)


def test_fpn_top_down_channels_thin_and_the_detector_output_is_unchanged() -> None:
    """The FPN's lateral 1x1 convolutions feed one top-down sum: zero rows in all four go together
    with the matching input channels of the output convolutions, whose outputs (read by the heads,
    outside the traced backbone) keep their 256 channels."""
    from prunecli.thinning import thin_model

    torch.manual_seed(0)
    model, _ = create_model(f"maskrcnn_resnet50_fpn?{SMALL}")
    model.eval()
    fpn = model.backbone.fpn
    with torch.no_grad():
        for inner in fpn.inner_blocks:
            inner.weight[:100] = 0
            inner.bias[:100] = 0
    images = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(3))]
    with torch.no_grad():
        expected = model(images)[0]
    recipe = thin_model(model.backbone, torch.zeros(1, 3, 64, 64), verify=True)
    assert recipe.checks[-1]["status"] == "verified"
    for inner, layer in zip(fpn.inner_blocks, fpn.layer_blocks):
        assert inner.out_channels == 156 and tuple(layer.weight.shape) == (256, 156, 3, 3)
    with torch.no_grad():
        got = model(images)[0]
    _assert_same_detections(expected, got)


@pytest.mark.slow
def test_run_prunes_the_detector_and_thins_its_backbone(tmp_path: Path, examples_dir: str) -> None:
    from prunecli.checkpoint import load_model
    from prunecli.training.app import run_training
    from prunecli.training.config import merge_config

    schedule = tmp_path / "s.yaml"
    schedule.write_text(
        "version: 1\npruners:\n  f:\n    class: L1RankedStructureParameterPruner\n    group_type: Filters\n"
        "    desired_sparsity: 0.5\n    weights: [backbone.body.layer1.0.conv1.weight, backbone.body.layer2.0.conv2.weight]\n"
        "extensions:\n  t:\n    class: FilterRemover\n    thinning_func_str: remove_filters\n"
        "    arch: maskrcnn_resnet50_fpn\n    dataset: fake_detection\n"
        "policies:\n  - pruner: {instance_name: f}\n    epochs: [0]\n"
    )
    config = merge_config({
        "schedule": str(schedule), "model": f"maskrcnn_resnet50_fpn?num_classes=3&{SMALL}",
        "dataset": "fake_detection", "dataset_options": {"size": 4}, "epochs": 1, "batch_size": 2,
        "max_steps_per_epoch": 1, "max_eval_batches": 1, "lr": 0.001, "out_dir": str(tmp_path / "run"),
        "quiet": True,
    })  # fmt: skip
    result = run_training(config)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["top1"] is None and rows[0]["detection_loss"] == pytest.approx(rows[0]["val_loss"])
    compact = load_model(tmp_path / "run" / "compact.pt")
    assert tuple(compact.backbone.body.layer1[0].conv1.weight.shape) == (32, 64, 1, 1)
    assert tuple(compact.backbone.body.layer2[0].conv2.weight.shape) == (64, 128, 3, 3)
    assert result.compressed["params"] < result.dense["params"]
