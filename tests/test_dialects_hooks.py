"""LPOT's ``Pruning`` hooks and Neural Compressor's callbacks driving a user's own training loop.

Oracle: the same schedule driven through the compression scheduler's own six hooks
(``CompressionScheduler``, what ``prunecli run`` calls) with the same data: the masks after every
step must be bit-identical.
"""

from __future__ import annotations

import pytest
import torch
from support.hooks import batches, scheduler_masks
from torch import nn

from prunecli.api import Pruning, WeightPruningConfig, prepare_compression
from prunecli.compat.lpot import common
from prunecli.errors import ConfigError, ScheduleError
from prunecli.schedule import load_schedule

EPOCHS, STEPS = 3, 4

LPOT = """
pruning:
  approach:
    weight_compression:
      initial_sparsity: 0.0
      target_sparsity: 0.6
      start_epoch: 0
      end_epoch: 2
      pruners:
        - !Pruner
            prune_type: basic_magnitude
            names: ['fc.weight', 'conv.weight']
        - !Pruner
            prune_type: group_lasso
            names: ['fc2.weight']
            target_sparsity: 0.5
            parameters: {alpha: 0.01}
"""

INC = """
pruning_type: snip_momentum
pattern: 4x1
target_sparsity: 0.5
start_step: 1
end_step: 9
pruning_frequency: 2
sparsity_decay_type: cube
op_names: ['fc']
excluded_op_names: ['fc2']
"""


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc(torch.relu(self.conv(x)).flatten(1))))


def _data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    return batches(STEPS)


def _model() -> Net:
    torch.manual_seed(0)
    return Net()


def _reference(schedule) -> list[dict[str, torch.Tensor]]:
    """The scheduler's own hooks, as prunecli run calls them."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return scheduler_masks(schedule, model, _data(), EPOCHS, opt)


def _same(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> None:
    assert len(a) == len(b)
    for step, (x, y) in enumerate(zip(a, b)):
        assert x.keys() == y.keys(), step
        for name in x:
            assert torch.equal(x[name], y[name]), (step, name)


def test_lpot_pruning_object_drives_a_users_loop_with_the_schedulers_masks() -> None:
    reference = _reference(load_schedule("lpot.yaml", text=LPOT))
    assert 1 - float(reference[-1]["fc.weight"].mean()) == pytest.approx(int(0.6 * 2048) / 2048)

    prune = Pruning(load_schedule("lpot.yaml", text=LPOT))
    prune.model = common.Model(_model())
    data = prune.train_dataloader = _data()
    seen = []

    def train_func(model: nn.Module) -> None:  # the seed's BERT loop, on a small model
        optimizer = prune.optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for epoch in range(EPOCHS):
            model.train()
            prune.on_epoch_begin(epoch)
            for step, (x, y) in enumerate(data):
                prune.on_batch_begin(step)
                loss = nn.functional.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                prune.on_post_grad()
                optimizer.step()
                prune.on_batch_end()
                seen.append({n: m.clone() for n, m in prune.scheduler.masks.items() if m is not None})
            prune.on_epoch_end()

    prune.pruning_func = train_func
    prune.eval_func = lambda model: float((model.fc.weight == 0).float().mean())
    model = prune()
    _same(seen, reference)
    assert prune.accuracy == pytest.approx(1 - float(reference[-1]["fc.weight"].mean()))
    assert torch.equal(model.fc.weight == 0, reference[-1]["fc.weight"] == 0)


def test_lpot_pruning_trains_from_the_files_train_section() -> None:
    text = LPOT.replace(
        "pruning:\n",
        "pruning:\n  train:\n    end_epoch: 3\n    iteration: 2\n"
        "    optimizer: {SGD: {learning_rate: 0.05, momentum: 0.9}}\n"
        "    criterion: {CrossEntropyLoss: {reduction: None}}\n",
    )
    prune = Pruning(load_schedule("lpot.yaml", text=text))
    prune.model = _model()
    prune.train_dataloader = _data()
    model = prune()
    assert isinstance(prune.optimizer, torch.optim.SGD) and prune.optimizer.defaults["momentum"] == 0.9
    # epochs 0..2 ran, two steps each: the final level of the linear ramp is reached
    assert float((model.fc.weight == 0).float().mean()) == pytest.approx(int(0.6 * 2048) / 2048)


def test_lpot_pruning_without_a_model_or_training_says_what_to_set() -> None:
    prune = Pruning(load_schedule("lpot.yaml", text=LPOT))
    with pytest.raises(ConfigError, match="no model"):
        prune()
    prune.model = _model()
    with pytest.raises(ConfigError, match="pruning_func"):
        prune()


def test_inc_callbacks_drive_a_users_loop_with_the_schedulers_masks() -> None:
    reference = _reference(load_schedule("inc.yaml", text=INC))
    assert 1 - float(reference[-1]["fc.weight"].mean()) == pytest.approx(0.5)

    model, data = _model(), _data()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    config = WeightPruningConfig(
        [{"op_names": ["fc"], "excluded_op_names": ["fc2"]}],
        pruning_type="snip_momentum",
        pattern="4x1",
        target_sparsity=0.5,
        start_step=1,
        end_step=9,
        pruning_frequency=2,
        sparsity_decay_type="cube",
    )
    manager = prepare_compression(model, config, optimizer)
    seen = []
    manager.callbacks.on_train_begin()
    for epoch in range(EPOCHS):
        manager.callbacks.on_epoch_begin(epoch)
        for step, (x, y) in enumerate(data):
            manager.callbacks.on_step_begin(step)
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            manager.callbacks.on_before_optimizer_step()
            optimizer.step()
            manager.callbacks.on_after_optimizer_step()
            manager.callbacks.on_step_end()
            seen.append({n: m.clone() for n, m in manager.scheduler.masks.items() if m is not None})
        manager.callbacks.on_epoch_end()
    manager.callbacks.on_train_end()
    _same(seen, reference)
    # 4x1 blocks: whole runs of 4 output rows in one input column go together
    blocks = (manager.model.fc.weight == 0).reshape(4, 4, 128)
    assert bool((blocks.all(dim=1) | ~blocks.any(dim=1)).all())


def test_weight_pruning_config_is_checked_like_a_file() -> None:
    with pytest.raises(ScheduleError) as info:
        WeightPruningConfig(pruning_type="magnitude", patern="4x1")
    assert "did you mean pattern" in str(info.value.problems[0].message)


DISTILLER_LEVELS = """
version: 1
pruners:
  levels:
    class: SparsityLevelParameterPruner
    levels: {fc.weight: 0.6, conv.weight: 0.3}
policies:
  - pruner: {instance_name: levels}
    epochs: [START]
"""


@pytest.mark.parametrize("start", [0, 1])
def test_one_shot_lpot_and_inc_masks_equal_distillers_level_pruner(start: int) -> None:
    """A one-shot magnitude level per tensor is Distiller's SparsityLevelParameterPruner, mask for mask."""
    distiller = load_schedule("levels.yaml", text=DISTILLER_LEVELS.replace("START", str(start)))
    lpot = load_schedule(
        "lpot.yaml",
        text=(
            f"pruning:\n  approach:\n    weight_compression:\n      start_epoch: {start}\n      end_epoch: {start}\n"
            "      pruners:\n        - !Pruner {names: [fc.weight], target_sparsity: 0.6}\n"
            "        - !Pruner {names: [conv.weight], target_sparsity: 0.3}\n"
        ),
    )
    step = start * STEPS
    inc = load_schedule(
        "inc.yaml",
        text=(
            f"pruning_type: magnitude\npattern: 1x1\npruning_scope: local\nstart_step: {step}\nend_step: {step}\n"
            "pruning_configs:\n  - {op_names: ['^fc$'], target_sparsity: 0.6}\n"
            "  - {op_names: ['^conv$'], target_sparsity: 0.3}\n"
        ),
    )
    reference = _reference(distiller)
    assert 1 - float(reference[-1]["fc.weight"].mean()) == pytest.approx(int(0.6 * 2048) / 2048)
    _same(_reference(lpot), reference)
    _same(_reference(inc), reference)
