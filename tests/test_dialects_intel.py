"""Intel LPOT pruning YAML and Neural Compressor 2.x configs, compiled into the engine.

Oracles: the seed's YAML as LPOT documents it, LPOT's ramp ``init + (target - init) (e - start) /
(end - start)`` and Neural Compressor's decay formulas and step rule (``schedulers.py``,
``pruners/base.py``) written out here, and masks computed by hand from the weights' magnitudes.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from support.hooks import batches, scheduler_masks
from torch import nn

from prunecli.compression import build_compression
from prunecli.engine.allocation import Budget, Candidate, Global
from prunecli.engine.schedules import Cos, Cube
from prunecli.engine.targets import Unit
from prunecli.errors import ScheduleError
from prunecli.schedule import load_schedule
from prunecli.schedule.names import resolve_names

SEED = Path(__file__).parent / "data" / "dialects" / "lpot_seed.yaml"


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x))).flatten(1)
        return self.fc2(torch.relu(self.fc(x)))


def _drive(schedule, model: nn.Module, epochs: int, steps: int) -> list[dict[str, torch.Tensor]]:
    """Train with the scheduler's hooks; the masks after every step."""
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    return scheduler_masks(schedule, model, batches(steps, shape=(2, 3, 4, 4)), epochs, opt)


# ------------------------------------------------------------------------------------------ LPOT


def test_the_seed_yaml_compiles_with_its_training_section() -> None:
    schedule = load_schedule(SEED)
    assert schedule.dialect == "lpot"
    (entry,) = schedule.components["pruners"].values()
    assert entry.args["target"] == "element" and entry.args["metric"] == "l1"
    assert entry.args["sparsity"] == 0.97  # the pruner's override of the global 0.3
    assert entry.args["weights"] == ["layer1.0.conv1.weight"]
    (policy,) = schedule.policies
    assert policy.epochs == (0, 1, 2)  # LPOT prunes on start_epoch..end_epoch inclusive
    training = schedule.training
    assert training is not None
    assert training["epochs"] == 10 and training["max_steps_per_epoch"] == 100
    assert training["batch_size"] == 256 and training["dataset"] == "imagefolder"
    assert training["data_dir"] == "/path/to/imagenet/train"
    assert (training["optimizer"], training["lr"], training["momentum"]) == ("sgd", 0.1, 0.9)
    assert training["weight_decay"] == 0.0004 and training["optimizer_args"] == {"nesterov": False}
    names = [name for name, _ in training["dataset_options"]["transforms"]]
    assert names == ["RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    # a message about the pruner's names points at the line the user wrote them on
    assert schedule.where(("policies", 0)).line == 34  # the first key of the !Pruner entry


def test_only_the_pruner_tag_is_accepted() -> None:
    good = SEED.read_text()
    assert load_schedule("x.yaml", text=good).dialect == "lpot"
    bad = good.replace("- !Pruner", "- !python/object:os.system")
    with pytest.raises(ScheduleError) as info:
        load_schedule("x.yaml", text=bad)
    problem = info.value.problems[0]
    assert "unsupported YAML tag" in problem.message and problem.location.line == 34
    with pytest.raises(ScheduleError):
        load_schedule("x.yaml", text=good.replace("- !Pruner", "- !Prunr"))


def _lpot(pruner: str) -> str:
    return (
        "pruning:\n  approach:\n    weight_compression:\n      start_epoch: 0\n      end_epoch: 4\n"
        "      pruners:\n        - !Pruner\n"
        + "".join(f"            {line}\n" for line in pruner.splitlines())
    )


def test_basic_magnitude_follows_lpot_ramp_with_magnitude_masks() -> None:
    """Epoch e prunes the int(s_e * n) smallest |w| with s_e = s_i + (s_t - s_i) (e - start)/(end - start)."""
    text = _lpot(
        "prune_type: basic_magnitude\nnames: [fc.weight]\ninitial_sparsity: 0.1\ntarget_sparsity: 0.7\n"
        "start_epoch: 1\nend_epoch: 3"
    )
    model = Net()
    schedule = load_schedule("lpot.yaml", text=text)
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # weights stay put: the oracle sees the same |w|
    sched = build_compression(schedule, model, opt, steps_per_epoch=1)
    w = model.fc.weight.detach().abs().flatten()
    for epoch in range(5):
        sched.on_epoch_begin(epoch, opt)
        mask = sched.masks.get("fc.weight")
        if epoch < 1:
            assert mask is None
            continue
        level = 0.1 + (0.7 - 0.1) * (min(epoch, 3) - 1) / (3 - 1)
        k = int(level * w.numel())
        expected = torch.ones_like(w)
        expected[torch.argsort(w)[:k]] = 0
        assert torch.equal(mask.flatten(), expected), epoch


def test_group_lasso_trains_with_an_l1_term_of_strength_alpha() -> None:
    schedule = load_schedule(
        "lpot.yaml", text=_lpot("prune_type: group_lasso\nnames: [fc.weight]\nparameters: {alpha: 0.25}")
    )
    (reg,) = schedule.components["regularizers"].values()
    assert reg.class_name == "L1Regularizer" and reg.args["reg_regims"] == {"fc.weight": 0.25}
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    sched = build_compression(schedule, model, opt, steps_per_epoch=1)
    sched.on_epoch_begin(0, opt)
    zero = torch.zeros(())
    loss = sched.before_backward_pass(0, 0, 1, zero, opt)
    assert float(loss) == pytest.approx(0.25 * float(model.fc.weight.abs().sum()), rel=1e-5)


def test_gradient_sensitivity_ranks_rows_by_weight_times_gradient() -> None:
    schedule = load_schedule(
        "lpot.yaml", text=_lpot("prune_type: gradient_sensitivity\nnames: [fc.weight]\ntarget_sparsity: 0.5")
    )
    (entry,) = schedule.components["pruners"].values()
    assert (entry.args["target"], entry.args["metric"]) == ("filters", "taylor")
    transposed = load_schedule(
        "lpot.yaml",
        text=_lpot("prune_type: gradient_sensitivity\nnames: [fc.weight]\nparameters: {transpose: true}"),
    )
    assert next(iter(transposed.components["pruners"].values())).args["target"] == "channels"


def test_omitted_names_prune_every_2d_and_4d_weight() -> None:
    schedule = load_schedule("lpot.yaml", text=_lpot("prune_type: basic_magnitude"))
    shapes = {n: tuple(p.shape) for n, p in Net().named_parameters()}
    resolved = resolve_names(schedule, shapes)
    weights = next(iter(resolved.components["pruners"].values())).args["weights"]
    assert weights == ["conv.weight", "fc.weight", "fc2.weight"]


def test_unmatched_lpot_name_points_at_the_names_line_and_the_closest_parameter() -> None:
    schedule = load_schedule("lpot.yaml", text=_lpot("names: [fc.wieght]"))
    with pytest.raises(ScheduleError) as info:
        resolve_names(schedule, {n: tuple(p.shape) for n, p in Net().named_parameters()})
    problem = info.value.problems[0]
    assert problem.location.line == 8 and "fc.weight" in (problem.hint or "")


# ------------------------------------------------------------------------------------- INC decay


@pytest.mark.parametrize("t", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_cos_and_cube_decays_are_neural_compressors(t: float) -> None:
    init, target = 0.1, 0.8
    assert Cos(initial=init).level(t, target) == pytest.approx(
        (target - init) * (1 - math.cos(t * math.pi / 2)) + init
    )
    assert Cube(initial=init).level(t, target) == pytest.approx((target - init) * t**3 + init)


def _inc_levels(decay: str, target: float, start: int, end: int, freq: int, steps: int) -> list[float | None]:
    """Neural Compressor's rule: events at start + k*freq <= end; event k of K = (end-start)//freq."""
    total = (end - start) // freq
    out: list[float | None] = []
    for step in range(steps):
        if not (start <= step <= end and (step - start) % freq == 0):
            out.append(None)
            continue
        k = (step - start) // freq
        if start == end:
            out.append(target)
        elif decay == "exp":
            out.append(1 - (1 - target) ** (k / total))
        elif decay == "linear":
            out.append(target * k / total)
        elif decay == "cube":
            out.append(target * (k / total) ** 3)
        else:
            out.append(target * (1 - math.cos(k / total * math.pi / 2)))
    return out


@pytest.mark.parametrize("decay", ["exp", "linear", "cube", "cos"])
def test_inc_step_events_and_levels(decay: str) -> None:
    text = (
        f"pruning_type: magnitude\npattern: 1x1\ntarget_sparsity: 0.75\nstart_step: 2\nend_step: 8\n"
        f"pruning_frequency: 3\nsparsity_decay_type: {decay}\npruning_scope: local\nop_names: ['^fc$']\n"
    )
    schedule = load_schedule("inc.yaml", text=text)
    assert schedule.dialect == "inc"
    masks = _drive(schedule, Net(), epochs=3, steps=4)
    expected = _inc_levels(decay, 0.75, 2, 8, 3, 12)
    n = 16 * 128
    previous = 0.0
    for step, level in enumerate(expected):
        # masks are set at the start of a step (on_minibatch_begin / on_epoch_begin)
        got = 1 - float(masks[step]["fc.weight"].mean()) if "fc.weight" in masks[step] else 0.0
        if level is not None:
            previous = int(level * n) / n
        assert got == pytest.approx(previous), (step, level)


def test_inc_patterns_map_to_engine_targets() -> None:
    def target_of(pattern: str) -> object:
        text = f"pruning_type: magnitude\npattern: '{pattern}'\nstart_step: 0\nend_step: 0\n"
        if pattern == "2:4":  # an explicit target_sparsity must be the one N:M fixes
            text = text.replace("start_step", "target_sparsity: 0.5\nstart_step")
        return next(iter(load_schedule("inc.yaml", text=text).components["pruners"].values())).args["target"]

    assert target_of("1x1") == "element"
    assert target_of("4x1") == {"kind": "block", "shape": [4, 1]}
    assert target_of("2:4") == {"kind": "n:m", "n": 2, "m": 4}  # INC's N:M prunes N; the engine keeps n
    assert target_of("1:4") == {"kind": "n:m", "n": 3, "m": 4}
    assert target_of("channelx1") == "channels"
    assert target_of("1xchannel") == "filters"


def test_inc_pruner_configs_inherit_the_global_keys_and_select_modules() -> None:
    text = (
        "target_sparsity: 0.6\npruning_type: magnitude\npattern: 1x1\nstart_step: 0\nend_step: 0\n"
        "pruning_scope: local\npruning_configs:\n  - op_names: ['fc']\n    excluded_op_names: ['fc2']\n"
        "  - op_names: ['conv']\n    target_sparsity: 0.25\n"
    )
    schedule = load_schedule("inc.yaml", text=text)
    shapes = {n: tuple(p.shape) for n, p in Net().named_parameters()}
    first, second = resolve_names(schedule, shapes).components["pruners"].values()
    assert first.args["weights"] == ["fc.weight"] and first.args["sparsity"] == 0.6
    assert second.args["weights"] == ["conv.weight"] and second.args["sparsity"] == 0.25
    masks = _drive(schedule, Net(), epochs=1, steps=1)[-1]
    assert 1 - float(masks["fc.weight"].mean()) == pytest.approx(int(0.6 * 2048) / 2048)
    assert 1 - float(masks["conv.weight"].mean()) == pytest.approx(int(0.25 * 216) / 216)


def test_unmatched_op_name_names_the_closest_layers() -> None:
    text = "pruning_type: magnitude\npattern: 1x1\nop_names: ['layer1.conv']\n"
    schedule = load_schedule("inc.yaml", text=text)
    shapes = {"layer1.0.conv1.weight": (8, 3, 3, 3), "layer1.0.bn1.weight": (8,), "fc.weight": (4, 8)}
    with pytest.raises(ScheduleError) as info:
        resolve_names(schedule, shapes)
    problem = info.value.problems[0]
    assert "matches no Linear or convolution layer" in problem.message
    assert "layer1.0.conv1" in (problem.hint or "") and problem.location.line == 3


def test_global_allocation_takes_the_minimum_of_every_layer_first() -> None:
    strong = Candidate(Unit("a", ("a",)), torch.arange(10, 20).float(), torch.ones(10), True)
    weak = Candidate(Unit("b", ("b",)), torch.arange(0, 10).float(), torch.ones(10), True)
    keeps = Global(normalize="none", min_sparsity_per_layer=0.2).allocate(
        [strong, weak], Budget(0.5, 0.5, 20)
    )
    # 10 of 20 go: 2 forced from each, the other 6 are the lowest scores left (all in 'weak')
    assert keeps[0].tolist() == [0, 0] + [1] * 8
    assert keeps[1].tolist() == [0] * 8 + [1, 1]


def test_the_documented_inc_example_selects_layers_and_inherits_keys() -> None:
    """docs/dialects.md's example: 4x1 blocks on layer1-2 convolutions but layer1.0.conv1, 2:4 on the
    layer3 second convolutions; fc is the classifier head, which Neural Compressor always leaves out."""
    from prunecli.models import create_model
    from prunecli.schedule.names import module_classes

    schedule = load_schedule(Path(__file__).parent / "data" / "dialects" / "inc_example.yaml")
    model, _ = create_model("resnet20_cifar", dataset="cifar10")
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    convs, nm = resolve_names(schedule, shapes, module_classes(model)).components["pruners"].values()
    conv_weights = [n for n in shapes if n.endswith(("conv1.weight", "conv2.weight"))]
    layer12 = [
        n for n in conv_weights if n.startswith(("layer1.", "layer2.")) and n != "layer1.0.conv1.weight"
    ]
    assert convs.args["weights"] == layer12
    assert convs.args["target"] == {"kind": "block", "shape": [4, 1]} and convs.args["sparsity"] == 0.8
    assert convs.args["schedule"] == {
        "kind": "exponential",
        "every_steps": 50,
        "start_step": 1,
        "end_step": 1000,
    }
    assert convs.args["allocation"]["kind"] == "global"
    assert convs.args["metric"] == {"kind": "taylor", "decay": 0.9}  # snip_momentum
    assert nm.args["weights"] == [n for n in conv_weights if n.startswith("layer3.") and "conv2" in n]
    assert nm.args["target"] == {"kind": "n:m", "n": 2, "m": 4}
    assert nm.args["allocation"] == "uniform" and "sparsity" not in nm.args


def test_the_classifier_head_is_left_out_as_neural_compressor_finds_it() -> None:
    from prunecli.schedule.names import module_classes

    class Head(nn.Module):  # the last Linear is followed by Dropout only: still the head
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(8, 8)
            self.out = nn.Linear(8, 2)
            self.drop = nn.Dropout()

    class Tail(Head):  # something after the last Linear: no head
        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(2)

    schedule = load_schedule("inc.yaml", text="pruning_type: magnitude\npattern: 1x1\n")
    for model, expected in ((Head(), ["body.weight"]), (Tail(), ["body.weight", "out.weight"])):
        shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
        resolved = resolve_names(schedule, shapes, module_classes(model))
        assert next(iter(resolved.components["pruners"].values())).args["weights"] == expected


def test_inc_yaml_form_with_pruner_tags() -> None:
    text = (
        "pruning:\n  approach:\n    weight_compression_v2:\n      pruning_type: magnitude\n"
        "      target_sparsity: 0.4\n      pattern: 1x1\n      pruners:\n        - !Pruner\n"
        "            op_names: ['^fc$']\n        - !Pruner\n            op_names: ['conv']\n"
        "            target_sparsity: 0.2\n"
    )
    schedule = load_schedule("inc.yaml", text=text)
    assert schedule.dialect == "inc"
    first, second = schedule.components["pruners"].values()
    head = "ops-not:__CLASSIFIER_HEAD__"
    assert (first.args["weights"], first.args["sparsity"]) == (["ops:^fc$", head], 0.4)
    assert (second.args["weights"], second.args["sparsity"]) == (["ops:conv", head], 0.2)


@pytest.mark.parametrize(("decay", "expected"), [(1.0, [3.0, 6.0]), (0.9, [2.8, 5.6]), (0.0, [1.0, 2.0])])
def test_gradient_scores_decay_as_neural_compressors_snip_criteria(
    decay: float, expected: list[float]
) -> None:
    """snip_momentum: scores = 0.9 * scores + |w * g| per step; snip: the last step's |w * g|."""
    from prunecli.engine.metrics import TaylorMetric

    metric = TaylorMetric(decay=decay)
    metric.attach(None, ["w"])
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    for grad in (torch.tensor([2.0, 2.0]), torch.tensor([1.0, -1.0])):
        w.grad = grad
        metric.observe({"w": w})
    assert metric.sums["w"].tolist() == pytest.approx(expected)  # 0.9 * [2, 4] + [1, 2]


def test_converting_an_lpot_file_lists_its_training_section_as_lost() -> None:
    from prunecli.schedule.convert import convert_schedule

    conversion = convert_schedule(load_schedule(SEED), "native")
    (lost,) = conversion.lost
    assert lost.location.line == 2  # pruning.train
    assert "epochs: 10" in lost.hint and "batch_size: 256" in lost.hint and "lr: 0.1" in lost.hint
    assert (
        load_schedule("native.yaml", text=conversion.text).components["pruners"]["lpot_0"].args["sparsity"]
        == 0.97
    )
