"""Distiller's own checkpoint files: read without Distiller, rebuilt thin, and trained further.

The files are written here in Distiller's format (see tests/support/distiller_files.py): a dict
pickled with the optimizer class and ``distiller.thinning.ThinningRecipe`` namedtuples, names with
DataParallel's ``module.`` prefix, in the legacy torch format Distiller's torch 1.3 wrote.
"""

from __future__ import annotations

import importlib.abc
import json
import pickle
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from support.distiller_files import fake_module, parallel, save_distiller, thin_filters

from prunecli.checkpoint import load_checkpoint, load_model
from prunecli.checkpoint.model import resolve
from prunecli.cli.main import cli
from prunecli.errors import CheckpointError
from prunecli.models import create_model

X = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
#: layer1.0.conv1 keeps 12 of 16 filters (first recipe), layer3.1.conv1 keeps 32 of 64 (second)
KEEP1 = [i for i in range(16) if i % 4 != 1]
KEEP3 = list(range(0, 64, 2))


def _resnet20_thinned_by_distiller() -> tuple[dict, torch.Tensor, dict]:
    """A Distiller checkpoint of a thinned resnet20_cifar, the dense model's output, and the thin tensors.

    Oracle: a dense network whose removed filters (and their BatchNorm scale and shift) are zero
    computes exactly what the thinned one computes.
    """
    torch.manual_seed(1)
    dense, _ = create_model("resnet20_cifar", dataset="cifar10")
    with torch.no_grad():
        for module in dense.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        for conv, bn, keep in (
            (dense.layer1[0].conv1, dense.layer1[0].bn1, KEEP1),
            (dense.layer3[1].conv1, dense.layer3[1].bn1, KEEP3),
        ):
            dropped = torch.ones(conv.out_channels, dtype=torch.bool)
            dropped[keep] = False
            conv.weight[dropped] = 0
            bn.weight[dropped] = 0
            bn.bias[dropped] = 0
        element_mask = (torch.rand_like(dense.layer2[0].conv1.weight) > 0.5).float()
        dense.layer2[0].conv1.weight.mul_(element_mask)
    expected = dense.eval()(X)
    sd = {k: v.clone() for k, v in dense.state_dict().items()}
    thin = dict(sd)
    for prefix, successor, keep in (
        ("layer1.0", "layer1.0.conv2", KEEP1),
        ("layer3.1", "layer3.1.conv2", KEEP3),
    ):
        idx = torch.tensor(keep)
        thin[f"{prefix}.conv1.weight"] = sd[f"{prefix}.conv1.weight"][idx]
        for name in ("weight", "bias", "running_mean", "running_var"):
            thin[f"{prefix}.bn1.{name}"] = sd[f"{prefix}.bn1.{name}"][idx]
        thin[f"{successor}.weight"] = sd[f"{successor}.weight"][:, idx]
    params = [name for name, _ in dense.named_parameters()]
    momentum = {i: torch.randn(thin[name].shape) for i, name in enumerate(params)}
    masks = {name: None for name in params}
    masks["layer2.0.conv1.weight"] = element_mask
    masks["layer1.0.conv1.weight"] = torch.ones_like(thin["layer1.0.conv1.weight"])
    checkpoint = {
        "epoch": 7,
        "state_dict": OrderedDict(parallel(thin)),
        "arch": "resnet20_cifar",
        "is_parallel": True,
        "dataset": "cifar10",
        "optimizer_state_dict": {
            "state": {i: {"momentum_buffer": b} for i, b in momentum.items()},
            "param_groups": [
                {
                    "lr": 0.1,
                    "momentum": 0.9,
                    "dampening": 0,
                    "weight_decay": 1e-4,
                    "nesterov": False,
                    "params": list(range(len(params))),
                }
            ],
        },
        "optimizer_type": torch.optim.SGD,
        "compression_sched": {"masks_dict": parallel(masks)},
        "thinning_recipes": [
            thin_filters(dense, "layer1.0.conv1", "layer1.0.bn1", "layer1.0.conv2", KEEP1),
            thin_filters(dense, "layer3.1.conv1", "layer3.1.bn1", "layer3.1.conv2", KEEP3),
        ],
        "extras": {"current_top1": 91.2, "best_top1": 91.5, "best_epoch": 6},
    }
    return checkpoint, expected, {"thin": thin, "momentum": momentum, "masks": masks, "params": params}


@pytest.fixture(scope="module")
def thinned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.Tensor, dict]:
    checkpoint, expected, facts = _resnet20_thinned_by_distiller()
    path = save_distiller(
        tmp_path_factory.mktemp("distiller") / "checkpoint.pth.tar", checkpoint, legacy=True
    )
    return path, expected, facts


class _NoDistillerImports(importlib.abc.MetaPathFinder):
    """Records (and blocks) any attempt to import a module named distiller during a load."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] == "distiller":
            self.attempts.append(fullname)
            raise ImportError(f"{fullname} must not be imported")
        return None


def test_thinned_resnet20_loads_architecture_weights_masks_optimizer(thinned) -> None:
    path, expected, facts = thinned
    guard = _NoDistillerImports()
    sys.meta_path.insert(0, guard)
    try:
        net, checkpoint = resolve(path)
    finally:
        sys.meta_path.remove(guard)
    assert guard.attempts == [] and "distiller" not in sys.modules
    # architecture: both recipes applied, module attributes follow
    assert net.layer1[0].conv1.weight.shape == (12, 16, 3, 3) and net.layer1[0].conv1.out_channels == 12
    assert net.layer1[0].bn1.num_features == 12 and net.layer1[0].conv2.in_channels == 12
    assert net.layer3[1].conv1.weight.shape == (32, 64, 3, 3)
    assert net.layer3[1].conv2.weight.shape == (
        64,
        32,
        3,
        3,
    )
    # weights: the thin network computes what the dense one with zeroed filters computes
    torch.testing.assert_close(net.eval()(X), expected, rtol=1e-5, atol=1e-5)
    for name, tensor in facts["thin"].items():
        assert torch.equal(net.state_dict()[name], tensor), name
    # masks (DataParallel names dropped), epoch, optimizer class and state, extras
    assert torch.equal(checkpoint["masks"]["layer2.0.conv1.weight"], facts["masks"]["layer2.0.conv1.weight"])
    assert checkpoint["masks"]["conv1.weight"] is None
    assert checkpoint["epoch"] == 7 and checkpoint["optimizer_type"] == "SGD"
    state = checkpoint["optimizer"]["state"]
    assert all(torch.equal(state[i]["momentum_buffer"], b) for i, b in facts["momentum"].items())
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == 0.1
    assert checkpoint["extras"]["best_top1"] == 91.5 and checkpoint["extras"]["source"] == "distiller"
    assert checkpoint["model"]["name"] == "resnet20_cifar"
    # the optimizer state goes into a real SGD over the thin model's parameters
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
    optimizer.load_state_dict(checkpoint["optimizer"])
    assert optimizer.param_groups[0]["momentum"] == 0.9


def test_zip_format_reads_the_same(tmp_path: Path, thinned) -> None:
    path, expected, _ = thinned
    checkpoint, _, _ = _resnet20_thinned_by_distiller()
    zipped = save_distiller(tmp_path / "zip.pth.tar", checkpoint, legacy=False)
    torch.testing.assert_close(load_model(zipped)(X), expected, rtol=1e-5, atol=1e-5)


def test_import_distiller_writes_a_plain_prunecli_checkpoint(tmp_path: Path, thinned) -> None:
    path, expected, facts = thinned
    out = tmp_path / "imported.pt"
    result = CliRunner().invoke(cli, ["import-distiller", str(path), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["model"] == "resnet20_cifar" and summary["epoch"] == 7 and summary["optimizer"] == "SGD"
    raw = torch.load(out, weights_only=True)  # plain data: no class needed
    assert raw["format"] == "prunecli-checkpoint" and raw["recipe"] is not None
    assert raw["recipe"]["tensors"]["layer1.0.conv1.weight"] == [[0, KEEP1]]
    assert raw["recipe"]["tensors"]["layer3.1.conv2.weight"] == [[1, KEEP3]]
    torch.testing.assert_close(load_model(out)(X), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(raw["optimizer"]["state"][0]["momentum_buffer"], facts["momentum"][0])


def test_thin_and_report_read_distiller_files(tmp_path: Path, thinned) -> None:
    path, expected, _ = thinned
    compact = tmp_path / "compact.pt"
    result = CliRunner().invoke(cli, ["thin", str(path), "-o", str(compact), "--json"])
    assert result.exit_code == 0, result.output
    net = load_model(compact)
    assert net.layer1[0].conv1.out_channels == 12  # Distiller's thinning is kept
    torch.testing.assert_close(net(X), expected, rtol=1e-5, atol=1e-5)
    result = CliRunner().invoke(cli, ["report", str(path), "--no-latency", "--json"])
    assert result.exit_code == 0, result.output
    assert '"resnet20_cifar"' in result.stdout


def test_state_dict_only_dense_baseline_without_batchnorm_counters(tmp_path: Path) -> None:
    """Distiller's dense baselines predate num_batches_tracked; torch's own loader starts them at 0."""
    torch.manual_seed(2)
    dense, _ = create_model("resnet20_cifar", dataset="cifar10")
    old = OrderedDict((k, v) for k, v in dense.state_dict().items() if not k.endswith("num_batches_tracked"))
    path = tmp_path / "checkpoint_trained_dense.pth.tar"
    torch.save(
        {"state_dict": OrderedDict(parallel(old)), "epoch": 179}, path, _use_new_zipfile_serialization=False
    )
    reference, _ = create_model("resnet20_cifar", dataset="cifar10")
    reference.load_state_dict(old, strict=True)  # what torch itself accepts
    net = load_model(path, model="resnet20_cifar")
    for name, tensor in reference.state_dict().items():
        assert torch.equal(net.state_dict()[name], tensor), name
    assert int(net.bn1.num_batches_tracked) == 0
    torch.testing.assert_close(net(X), reference.eval()(X))


def _hostile(tmp_path: Path, payload: object, name: str) -> Path:
    checkpoint, _, _ = _resnet20_thinned_by_distiller()
    checkpoint["extras"] = {"best_top1": payload}
    return save_distiller(tmp_path / name, checkpoint, legacy=True)


class _Marker:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_unexpected_class_is_refused_by_name_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    path = _hostile(tmp_path, _Marker(str(marker)), "hostile.pth.tar")
    result = CliRunner().invoke(cli, ["import-distiller", str(path), "-o", str(tmp_path / "o.pt")])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, text
    assert "hostile.pth.tar" in text and "open" in text and "nothing from the file was executed" in text
    assert not marker.exists() and not (tmp_path / "o.pt").exists()
    assert "Traceback" not in text


def test_quantizer_class_is_refused_naming_it(tmp_path: Path) -> None:
    class PostTrainLinearQuantizer:
        pass

    checkpoint, _, _ = _resnet20_thinned_by_distiller()
    with fake_module(
        "distiller.quantization.range_linear", PostTrainLinearQuantizer=PostTrainLinearQuantizer
    ):
        PostTrainLinearQuantizer.__module__ = "distiller.quantization.range_linear"
        PostTrainLinearQuantizer.__qualname__ = "PostTrainLinearQuantizer"
        checkpoint["quantizer_metadata"] = {"type": PostTrainLinearQuantizer, "params": {}}
        path = save_distiller(tmp_path / "quantized.pth.tar", checkpoint)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    text = info.value.render()
    assert "distiller.quantization.range_linear.PostTrainLinearQuantizer" in text and "quantized" in text


def test_an_allowed_name_cannot_be_used_to_run_anything(tmp_path: Path) -> None:
    """A pickle that *calls* the optimizer class (hand-written opcodes) is refused, nothing built."""
    body = (
        b"\x80\x02}q\x00(X\x04\x00\x00\x00archq\x01X\x0e\x00\x00\x00resnet20_cifarq\x02"
        b"X\x0e\x00\x00\x00optimizer_typeq\x03ctorch.optim.sgd\nSGD\nq\x04)Rq\x05"
        b"X\n\x00\x00\x00state_dictq\x06}q\x07u."
    )
    pickle.loads(body.replace(b"ctorch.optim.sgd\nSGD\nq\x04)R", b"N"))  # the frame itself is valid pickle
    path = tmp_path / "calls_sgd.pth.tar"
    path.write_bytes(body)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    text = info.value.render()
    assert "refused" in text and "calls_sgd.pth.tar" in text and "nothing from" in text


def test_truncated_distiller_file_names_the_file(tmp_path: Path, thinned) -> None:
    path, _, _ = thinned
    cut = tmp_path / "cut.pth.tar"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    result = CliRunner().invoke(cli, ["import-distiller", str(cut), "-o", str(tmp_path / "o.pt")])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "cut.pth.tar" in text and "truncated or corrupt" in text, text


CONTINUE_SCHEDULE = """\
version: 1
pruners:
  agp:
    class: AutomatedGradualPruner
    initial_sparsity: 0.1
    final_sparsity: 0.3
    weights: [module.layer2.1.conv1.weight]
policies:
  - pruner: {instance_name: agp}
    starting_epoch: 8
    ending_epoch: 10
    frequency: 1
"""


def _run(tmp_path: Path, *args: str, lr: str = "0.5") -> Path:
    (tmp_path / "s.yaml").write_text(CONTINUE_SCHEDULE)
    out = tmp_path / "run"
    common = ["--dataset", "fake", "--max-steps-per-epoch", "2", "-b", "8", "--max-eval-batches", "1"]
    result = CliRunner().invoke(
        cli, ["run", str(tmp_path / "s.yaml"), *args, *common, "--lr", lr, "-q", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out


def test_run_resume_from_a_distiller_file_continues_training(tmp_path: Path, thinned) -> None:
    """Distiller's --resume-from: thin architecture, weights, masks, optimizer (its lr) and next epoch."""
    path, _, facts = thinned
    out = _run(tmp_path, "--resume", str(path), "--epochs", "9")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [8]  # saved epoch 7, so training goes on at 8
    saved = load_checkpoint(out / "checkpoint.pt")
    assert saved["epoch"] == 8
    assert saved["optimizer"]["param_groups"][0]["lr"] == 0.1  # the file's optimizer, not --lr 0.5
    net = load_model(out / "checkpoint.pt")
    assert net.layer1[0].conv1.out_channels == 12 and net.layer3[1].conv1.weight.shape[0] == 32
    before, after = facts["thin"]["layer2.0.conv1.weight"], net.layer2[0].conv1.weight.detach()
    mask = facts["masks"]["layer2.0.conv1.weight"]
    assert torch.all(after[mask == 0] == 0)  # the file's mask is still enforced
    assert not torch.equal(after[mask == 1], before[mask == 1])  # while the other weights trained
    agp = net.layer2[1].conv1.weight
    assert int((agp == 0).sum()) == int(0.1 * agp.numel())  # the schedule's own pruning starts at epoch 8


def test_run_initial_weights_from_a_thinned_distiller_file(tmp_path: Path, thinned) -> None:
    """Distiller's --exp-load-weights-from: the thinned weights, with a fresh optimizer at epoch 0."""
    path, _, facts = thinned
    out = _run(tmp_path, "--initial-weights", str(path), "--model", "resnet20_cifar", "--epochs", "1")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0]
    saved = load_checkpoint(out / "checkpoint.pt")
    assert saved["optimizer"]["param_groups"][0]["lr"] == 0.5
    assert load_model(out / "checkpoint.pt").layer1[0].conv1.out_channels == 12


def test_run_initial_weights_from_a_dense_baseline_without_counters(tmp_path: Path) -> None:
    torch.manual_seed(4)
    dense, _ = create_model("resnet20_cifar", dataset="cifar10")
    old = OrderedDict((k, v) for k, v in dense.state_dict().items() if not k.endswith("num_batches_tracked"))
    path = tmp_path / "checkpoint_trained_dense.pth.tar"
    torch.save({"state_dict": OrderedDict(parallel(old))}, path, _use_new_zipfile_serialization=False)
    args = ["--initial-weights", str(path), "--model", "resnet20_cifar", "--epochs", "1", "--momentum", "0"]
    out = _run(tmp_path, *args, "--wd", "0", lr="1e-12")  # two steps that cannot move the weights visibly
    trained = load_model(out / "checkpoint.pt").state_dict()
    for name, tensor in old.items():
        if "running" not in name:  # BatchNorm statistics do follow the two training batches
            torch.testing.assert_close(trained[name], tensor, rtol=0, atol=1e-9)


def test_dense_distiller_checkpoint_with_an_optimizer_class(tmp_path: Path) -> None:
    """No recipes, so no ``distiller.`` name in the pickle: recognised by its keys, read the same way."""
    torch.manual_seed(5)
    dense, _ = create_model("resnet20_cifar", dataset="cifar10")
    checkpoint = {
        "epoch": 179,
        "arch": "resnet20_cifar",
        "dataset": "cifar10",
        "state_dict": OrderedDict(parallel(dense.state_dict())),
        "optimizer_type": torch.optim.SGD,
        "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 0.001, "params": []}]},
        "extras": {"best_top1": 91.8},
    }
    path = save_distiller(tmp_path / "dense.pth.tar", checkpoint, legacy=True)
    loaded = load_checkpoint(path)
    assert loaded["optimizer_type"] == "SGD" and loaded["epoch"] == 179
    torch.testing.assert_close(load_model(path)(X), dense.eval()(X))
