import sys
import types

import pytest
import torch
from support.compression import TinyCNN, make_schedule, train, zero_filters

from prunecli.compression import build_scheduler
from prunecli.compression.batchnorm import BatchNormFolder
from prunecli.errors import ScheduleError

THIN = {
    "net_thinner": (
        "FilterRemover",
        {"thinning_func_str": "remove_filters", "arch": "tiny", "dataset": "cifar10"},
    )
}
PRUNE = {
    "p": (
        "L1RankedStructureParameterPruner",
        {"group_type": "Filters", "desired_sparsity": 0.5, "weights": ["conv1.weight"]},
    )
}


@pytest.fixture
def fake_thinning(monkeypatch):
    """Records calls and removes the zero filters of conv1 (and bn1, conv2's channels) like thinning would."""
    calls = []

    def thin_model(
        model,
        example_input,
        *,
        mode="both",
        optimizer=None,
        masks=None,
        verify=True,
        rule="exact",
        prune_normalized=False,
        narrow_heads=False,
    ):
        keep = (
            (model.conv1.weight.reshape(model.conv1.out_channels, -1).abs().sum(1) != 0).nonzero().flatten()
        )
        calls.append(
            {
                "mode": mode,
                "optimizer": optimizer,
                "kept": keep.tolist(),
                "mask": masks["conv1.weight"],
                "rule": rule,
            }
        )
        with torch.no_grad():
            model.conv1.weight = torch.nn.Parameter(model.conv1.weight[keep].clone())
            model.conv1.out_channels = len(keep)
            for name in ("weight", "bias"):
                setattr(model.bn1, name, torch.nn.Parameter(getattr(model.bn1, name)[keep].clone()))
            model.bn1.running_mean = model.bn1.running_mean[keep].clone()
            model.bn1.running_var = model.bn1.running_var[keep].clone()
            model.bn1.num_features = len(keep)
            model.conv2.weight = torch.nn.Parameter(model.conv2.weight[:, keep].clone())
        masks["conv1.weight"] = masks["conv1.weight"][keep]
        masks["conv2.weight"] = None
        return {"kept": keep.tolist()}

    module = types.ModuleType("prunecli.thinning")
    module.thin_model = thin_model
    monkeypatch.setitem(sys.modules, "prunecli.thinning", module)
    return calls


def test_thinning_runs_once_after_masks_in_its_epoch(fake_thinning):
    torch.manual_seed(0)
    model = TinyCNN()
    schedule = make_schedule(
        {"pruners": PRUNE, "extensions": THIN},
        [("pruner", "p", {"epochs": [0]}, None), ("extension", "net_thinner", {"epochs": [0, 1]}, None)],
    )
    built = {}

    def fresh_optimizer():
        built["opt"] = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        return built["opt"]

    opt = fresh_optimizer()
    sched = build_scheduler(schedule, model, opt, example_input=torch.randn(1, 3, 8, 8))
    sched.on_epoch_begin(0)
    sched.on_minibatch_begin(0, 0, 2, opt)
    assert len(fake_thinning) == 1
    call = fake_thinning[0]
    assert call["mode"] == "filters" and call["optimizer"] is opt
    assert call["rule"] == "distiller"  # schedules thin as Distiller did: BN shifts do not keep a filter
    assert zero_filters(call["mask"]) == 4  # the pruner's mask existed (and was applied) before thinning
    assert model.conv1.weight.shape[0] == 4
    assert sched.masks["conv1.weight"].shape == model.conv1.weight.shape
    assert sched.thinning_recipes == [{"kept": call["kept"]}]
    sched.on_minibatch_begin(0, 1, 2, opt)
    assert len(fake_thinning) == 1  # once per epoch
    sched.on_epoch_end(0, opt)
    # the thinned model keeps training under the scheduler (parameters were re-read)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    train(sched, model, opt, epochs=2, start_epoch=1)
    assert len(fake_thinning) == 2


def test_thinning_needs_example_input():
    schedule = make_schedule({"extensions": THIN}, [("extension", "net_thinner", {"epochs": [0]}, None)])
    with pytest.raises(ScheduleError, match="example input"):
        build_scheduler(schedule, TinyCNN(), None)


def test_thinning_func_str_validated():
    bad = {"t": ("StructureRemover", {"thinning_func_str": "remove_everything", "arch": "m", "dataset": "d"})}
    schedule = make_schedule({"extensions": bad}, [("extension", "t", {"epochs": [0]}, None)])
    with pytest.raises(ScheduleError, match="remove_everything"):
        build_scheduler(schedule, TinyCNN(), None, example_input=torch.randn(1, 3, 8, 8))


def test_batchnorm_folder_finds_consumer_bn():
    model = TinyCNN().eval()
    with torch.no_grad():
        model.bn2.weight.copy_(torch.linspace(0.1, 2.0, 16))
        model.bn2.running_var.copy_(torch.linspace(0.5, 4.0, 16))
    folder = BatchNormFolder(model)
    assert folder.pairs == {"conv1": "bn1", "conv2": "bn2"}
    folded = folder("conv2.weight", model.conv2.weight)
    scale = model.bn2.weight / torch.sqrt(model.bn2.running_var + model.bn2.eps)
    assert torch.allclose(folded, model.conv2.weight * scale.view(-1, 1, 1, 1))
    assert folder("fc.weight", model.fc.weight) is model.fc.weight


def test_fold_batchnorm_changes_the_ranking():
    torch.manual_seed(0)
    model = TinyCNN()
    with torch.no_grad():
        model.conv2.weight.copy_(torch.ones_like(model.conv2.weight))
        model.conv2.weight[:8] *= 2.0  # raw ranking would prune filters 8..15
        model.bn2.weight.copy_(torch.cat([torch.full((8,), 0.01), torch.ones(8)]))  # folded: 0..7 are weakest
    schedule = make_schedule(
        {
            "pruners": {
                "p": (
                    "L1RankedStructureParameterPruner",
                    {"group_type": "Filters", "desired_sparsity": 0.5, "weights": ["conv2.weight"]},
                )
            }
        },
        [("pruner", "p", {"epochs": [0]}, {"fold_batchnorm": True})],
    )
    sched = build_scheduler(schedule, model, torch.optim.SGD(model.parameters(), lr=0.1))
    sched.on_epoch_begin(0)
    dead = (sched.masks["conv2.weight"].view(16, -1).sum(1) == 0).nonzero().flatten().tolist()
    assert dead == list(range(8))
