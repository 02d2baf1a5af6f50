"""Generate the binary bad inputs (checkpoints, data directories) into a folder.

Usage: python make_inputs.py OUT_DIR. Kept next to cases.yaml so the corpus is reproducible; the
test runs it into a temporary folder ({gen} in cases.yaml).
"""

from __future__ import annotations

import collections
import io
import os
import sys
import types
from pathlib import Path

import torch

from prunecli.checkpoint import build_checkpoint, save_checkpoint
from prunecli.models import create_model

HERE = Path(__file__).resolve().parent


def _fake_distiller_types():
    """Distiller's recipe namedtuple and a quantizer class, pickled under Distiller's module names."""
    package = types.ModuleType("distiller")
    thinning = types.ModuleType("distiller.thinning")
    quantization = types.ModuleType("distiller.quantization")
    recipe = collections.namedtuple("ThinningRecipe", ["modules", "parameters"])
    recipe.__module__ = "distiller.thinning"
    thinning.ThinningRecipe = recipe
    quantizer = type("PostTrainLinearQuantizer", (), {"__module__": "distiller.quantization"})
    quantization.PostTrainLinearQuantizer = quantizer
    package.thinning, package.quantization = thinning, quantization
    sys.modules.setdefault("distiller", package)
    sys.modules.setdefault("distiller.thinning", thinning)
    sys.modules.setdefault("distiller.quantization", quantization)
    return recipe, quantizer


class _Marker:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def checkpoints(out: Path) -> None:
    torch.manual_seed(0)
    net, spec = create_model("simplenet_mnist", dataset="mnist")
    good = build_checkpoint(state_dict=net.state_dict(), model=spec, epoch=0)
    save_checkpoint(out / "good.pt", good)
    data = (out / "good.pt").read_bytes()
    (out / "truncated.pt").write_bytes(data[: len(data) // 2])
    (out / "empty.pt").write_bytes(b"")
    (out / "random.pt").write_bytes(os.urandom(4096))
    (out / "yaml_not_checkpoint.pt").write_text("version: 1\npolicies: []\n")
    torch.save(torch.zeros(3), out / "tensor_only.pt")
    other, other_spec = create_model("resnet_digits", dataset="digits")
    save_checkpoint(out / "other_model.pt", build_checkpoint(state_dict=net.state_dict(), model=other_spec))
    newer = dict(good, format_version=99)
    torch.save(newer, out / "newer_version.pt")
    broken = dict(good)
    del broken["masks"]
    torch.save(broken, out / "missing_keys.pt")
    user_spec = {
        "kind": "file",
        "name": "Net",
        "kwargs": {},
        "path": str(HERE / "models" / "good_net.py"),
        "dataset": None,
    }
    user_net, _ = create_model(f"{HERE / 'models' / 'good_net.py'}:Net")
    save_checkpoint(
        out / "user_code_model.pt", build_checkpoint(state_dict=user_net.state_dict(), model=user_spec)
    )
    recipe, quantizer = _fake_distiller_types()
    distiller = {
        "epoch": 3,
        "arch": "simplenet_mnist",
        "dataset": "mnist",
        "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()},
        "optimizer_type": torch.optim.SGD,
        "compression_sched": {"masks_dict": {}},
        "thinning_recipes": [recipe({}, {})],
        # a quantized model's checkpoint: its quantizer class is not one prunecli reads
        "quantizer_metadata": {"type": quantizer, "params": {}},
    }
    torch.save(distiller, out / "distiller.pth.tar", _use_new_zipfile_serialization=False)
    marker = str(out / "MARKER_code_was_executed")
    torch.save({"state_dict": {}, "x": _Marker(marker)}, out / "malicious.pt")
    buffer = io.BytesIO()
    torch.save({"x": 1}, buffer)
    (out / "no_model_dict.pt").write_bytes(buffer.getvalue())
    for name in (
        "truncated.pt",
        "empty.pt",
        "random.pt",
        "other_model.pt",
        "newer_version.pt",
        "distiller.pth.tar",
        "malicious.pt",
        "user_code_model.pt",
    ):
        run_dir = out / f"resume_{Path(name).stem.replace('.pth', '')}"
        run_dir.mkdir()
        (run_dir / "checkpoint.pt").write_bytes((out / name).read_bytes())
    (out / "resume_no_checkpoint").mkdir()


def model_files(out: Path) -> None:
    """Files that cannot live in the repository as .py (linters would reject them)."""
    (out / "syntax_error.py").write_text('"""Not valid Python."""\n\ndef Net(:\n    pass\n', encoding="utf-8")


def data_dirs(out: Path) -> None:
    (out / "data_empty").mkdir()
    junk = out / "mnist_junk"
    junk.mkdir()
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (junk / name).write_bytes(b"\x00\x00\x08\x03" + os.urandom(64))
    cifar = out / "cifar_junk" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    for name in (
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
        "batches.meta",
    ):
        (cifar / name).write_bytes(os.urandom(256))
    folder = out / "imagefolder_no_images"
    for split in ("train", "val"):
        (folder / split / "cat").mkdir(parents=True)
        (folder / split / "cat" / "notes.txt").write_text("not an image")
    (out / "a_file_not_a_dir").write_text("x")


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    checkpoints(target)
    model_files(target)
    data_dirs(target)
