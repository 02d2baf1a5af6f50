"""load_model and Distiller checkpoints: rebuild, re-thin, load strictly, never run untrusted code."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import prunecli.models as models
from prunecli.checkpoint import build_checkpoint, load_checkpoint, load_model, save_checkpoint
from prunecli.errors import CheckpointError, ModelError

X = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def _zoo_checkpoint(tmp_path: Path, name: str = "simplenet_mnist") -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    net, spec = models.create_model(name)
    path = tmp_path / "c.pt"
    save_checkpoint(path, build_checkpoint(state_dict=net.state_dict(), model=spec))
    return path, net


def test_zoo_model_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    path, net = _zoo_checkpoint(tmp_path)
    rebuilt = load_model(path)
    assert not rebuilt.training
    assert torch.equal(rebuilt(X), net.eval()(X))


def test_model_argument_of_same_zoo_model_is_accepted(tmp_path: Path) -> None:
    path, net = _zoo_checkpoint(tmp_path)
    assert torch.equal(load_model(path, model="simplenet_mnist")(X), net.eval()(X))


def test_weights_from_another_model_list_the_mismatches(tmp_path: Path) -> None:
    path, _ = _zoo_checkpoint(tmp_path)
    with pytest.raises(CheckpointError) as info:
        load_model(path, model="simplenet_mnist?num_classes=7")
    text = info.value.render()
    assert "fc2.weight (10, 500) vs model (7, 500)" in text and str(path) in text


def test_weights_from_unrelated_architecture_list_missing_and_extra_keys(tmp_path: Path) -> None:
    path, _ = _zoo_checkpoint(tmp_path)
    with pytest.raises(CheckpointError) as info:
        load_model(path, model="resnet20_cifar")
    text = info.value.render()
    assert "missing from the checkpoint: bn1.weight" in text
    assert "not in the model: conv1.bias, conv2.weight" in text
    assert "conv1.weight (20, 1, 5, 5) vs model (16, 3, 3, 3)" in text
    assert "written for model simplenet_mnist" in text
    assert "and 119 more" in text  # resnet20_cifar has 127 tensors the checkpoint lacks; 8 are listed


_USER_MODEL = """
import torch
from torch import nn
import pathlib
pathlib.Path(__file__).with_name("executed").write_text("yes")

class Tiny(nn.Module):
    def __init__(self, width: int = 3):
        super().__init__()
        self.fc = nn.Linear(4, width)

    def forward(self, x):
        return self.fc(x)
"""


def _file_model_checkpoint(tmp_path: Path) -> tuple[Path, Path, torch.nn.Module]:
    source = tmp_path / "user_model.py"
    source.write_text(_USER_MODEL)
    net, spec = models.create_model(f"{source}:Tiny?width=5")
    (tmp_path / "executed").unlink()
    path = tmp_path / "c.pt"
    save_checkpoint(path, build_checkpoint(state_dict=net.state_dict(), model=spec))
    return path, source, net


def test_user_code_model_is_not_built_unless_named(tmp_path: Path) -> None:
    path, source, _ = _file_model_checkpoint(tmp_path)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    text = info.value.render()
    assert f"execute the Python file {source}" in text
    assert f"--model {source}:Tiny" in text
    assert not (tmp_path / "executed").exists()


def test_user_code_model_is_built_when_named(tmp_path: Path) -> None:
    path, source, net = _file_model_checkpoint(tmp_path)
    rebuilt = load_model(path, model=f"{source}:Tiny")
    x = torch.randn(2, 4)
    assert rebuilt.fc.out_features == 5  # stored keyword arguments kept
    assert torch.equal(rebuilt(x), net(x))


def test_import_model_is_not_built_unless_named(tmp_path: Path) -> None:
    net = torch.nn.Linear(2, 2)
    spec = {"kind": "import", "name": "somepkg.models:factory", "kwargs": {}, "path": None, "dataset": None}
    save_checkpoint(tmp_path / "c.pt", build_checkpoint(state_dict=net.state_dict(), model=spec))
    with pytest.raises(CheckpointError, match="import and run somepkg.models:factory"):
        load_model(tmp_path / "c.pt")


def test_weights_only_file_needs_model_argument(tmp_path: Path) -> None:
    torch.manual_seed(1)
    net, _ = models.create_model("simplenet_mnist")
    torch.save(net.state_dict(), tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="--model"):
        load_model(tmp_path / "w.pth")
    assert torch.equal(load_model(tmp_path / "w.pth", model="simplenet_mnist")(X), net.eval()(X))


def test_bad_model_argument_is_a_model_error(tmp_path: Path) -> None:
    path, _ = _zoo_checkpoint(tmp_path)
    with pytest.raises(ModelError):
        load_model(path, model="no_such_model_anywhere")


# ------------------------------------------------------------------------------------ Distiller


def _thin_distiller_checkpoint() -> tuple[dict, torch.Tensor]:
    """A converted Distiller checkpoint of simplenet_mnist with filters removed, plus the dense output.

    Oracle: a dense network whose removed filters are zero computes the same function as the thin one.
    """
    torch.manual_seed(3)
    dense, _ = models.create_model("simplenet_mnist")
    keep1 = torch.tensor([i for i in range(20) if i % 4 != 0])  # 15 of conv1's 20 filters
    keep2 = torch.tensor([i for i in range(50) if i % 5 != 0])  # 40 of conv2's 50 filters
    with torch.no_grad():
        for keep, conv in ((keep1, dense.conv1), (keep2, dense.conv2)):
            dropped = torch.ones(conv.out_channels, dtype=torch.bool)
            dropped[keep] = False
            conv.weight[dropped] = 0
            conv.bias[dropped] = 0
    expected = dense.eval()(X)
    sd = dense.state_dict()
    thin = dict(sd)
    thin["conv1.weight"] = sd["conv1.weight"][keep1]
    thin["conv1.bias"] = sd["conv1.bias"][keep1]
    thin["conv2.weight"] = sd["conv2.weight"][keep2][:, keep1]
    thin["conv2.bias"] = sd["conv2.bias"][keep2]
    thin["fc1.weight"] = sd["fc1.weight"].view(500, 50, 4, 4)[:, keep2].reshape(500, 640)
    recipes = [
        {
            "modules": {"module.conv1": {"out_channels": 15}, "module.conv2": {"in_channels": 15}},
            "parameters": {
                "module.conv1.weight": [(0, keep1)],
                "module.conv1.bias": [(0, keep1)],
                "module.conv2.weight": [(1, keep1)],
            },
        },
        {
            "modules": {"module.conv2": {"out_channels": 40}, "module.fc1": {"in_features": 640}},
            "parameters": {
                "module.conv2.weight": [(0, keep2)],
                "module.conv2.bias": [(0, keep2)],
                "module.fc1.weight": [(1, keep2, (500, 50, 4, 4), (500, 640))],
            },
        },
    ]
    masks = {f"module.{k}": (v != 0).float() for k, v in thin.items() if k.endswith("weight")}
    converted = {
        "arch": "simplenet_mnist",
        "dataset": "mnist",
        "epoch": 11,
        "state_dict": {f"module.{k}": v for k, v in thin.items()},
        "compression_sched": {"masks_dict": masks},
        "thinning_recipes": recipes,
        "optimizer_type": "SGD",
        "extras": {"best_top1": 99.1},
    }
    return converted, expected


def test_converted_distiller_checkpoint_maps_to_our_format(tmp_path: Path) -> None:
    converted, _ = _thin_distiller_checkpoint()
    torch.save(converted, tmp_path / "plain.pth.tar", _use_new_zipfile_serialization=False)
    ckpt = load_checkpoint(tmp_path / "plain.pth.tar")
    assert ckpt["format"] == "prunecli-checkpoint"
    assert ckpt["epoch"] == 11 and ckpt["optimizer_type"] == "SGD"
    assert set(ckpt["state_dict"]) == {k.removeprefix("module.") for k in converted["state_dict"]}
    assert set(ckpt["masks"]) == {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"}
    assert ckpt["extras"]["distiller"]["arch"] == "simplenet_mnist"
    assert ckpt["extras"]["best_top1"] == 99.1


def test_converted_thinned_distiller_checkpoint_rebuilds_the_thin_model(tmp_path: Path) -> None:
    converted, expected = _thin_distiller_checkpoint()
    torch.save(converted, tmp_path / "plain.pth.tar")
    net = load_model(tmp_path / "plain.pth.tar")
    assert net.conv1.weight.shape == (15, 1, 5, 5)
    assert net.conv2.weight.shape == (40, 15, 5, 5) and net.conv2.out_channels == 40
    assert net.fc1.weight.shape == (500, 640) and net.fc1.in_features == 640
    torch.testing.assert_close(net(X), expected, rtol=1e-5, atol=1e-5)


def test_distiller_recipe_that_does_not_fit_is_a_checkpoint_error(tmp_path: Path) -> None:
    converted, _ = _thin_distiller_checkpoint()
    converted["arch"] = "resnet20_cifar"
    torch.save(converted, tmp_path / "plain.pth.tar")
    with pytest.raises(CheckpointError, match="thinning recipe does not fit"):
        load_model(tmp_path / "plain.pth.tar")


@pytest.mark.parametrize("legacy", [True, False])
def test_original_distiller_checkpoint_loads_without_distiller(tmp_path: Path, legacy: bool) -> None:
    """The pickled original (optimizer class, ThinningRecipe namedtuples) in both torch formats."""
    from support.distiller_files import save_distiller

    converted, expected = _thin_distiller_checkpoint()
    original = dict(converted)
    original["thinning_recipes"] = [(r["modules"], r["parameters"]) for r in converted["thinning_recipes"]]
    original["optimizer_type"] = torch.optim.SGD
    path = save_distiller(tmp_path / "checkpoint.pth.tar", original, legacy=legacy)
    ckpt = load_checkpoint(path)
    assert ckpt["optimizer_type"] == "SGD" and ckpt["epoch"] == 11
    net = load_model(path)
    assert "distiller" not in sys.modules
    torch.testing.assert_close(net(X), expected, rtol=1e-5, atol=1e-5)


def test_prunecli_thinned_checkpoint_is_rebuilt_through_its_recipe(tmp_path: Path) -> None:
    import prunecli.thinning as thinning
    torch.manual_seed(5)
    net, spec = models.create_model("simplenet_mnist")
    with torch.no_grad():
        net.conv1.weight[::3] = 0  # 7 of 20 filters become removable
        net.conv1.bias[::3] = 0
    expected = net.eval()(X)
    recipe = thinning.thin_model(net, X[:1], verify=True)
    assert net.conv1.out_channels == 13
    path = tmp_path / "thin.pt"
    save_checkpoint(path, build_checkpoint(state_dict=net.state_dict(), model=spec, recipe=recipe))
    rebuilt = load_model(path)
    assert rebuilt.conv1.weight.shape == (13, 1, 5, 5) and rebuilt.conv2.weight.shape == (50, 13, 5, 5)
    torch.testing.assert_close(rebuilt(X), expected, rtol=1e-5, atol=1e-5)
