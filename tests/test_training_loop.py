"""The training loop: Distiller's hook order, the returned loss, divergence, data order, metrics."""

import io

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunecli.errors import TrainingDiverged
from prunecli.training.loop import evaluate, train_epoch
from prunecli.training.seeding import rng_state, seed_everything, set_rng_state


class Recorder:
    """Stands in for the compression scheduler and logs every hook call."""

    def __init__(self, loss_scale: float = 1.0) -> None:
        self.calls: list[tuple] = []
        self.loss_scale = loss_scale

    def on_minibatch_begin(self, epoch, step, steps, optimizer):
        self.calls.append(("on_minibatch_begin", epoch, step, steps))

    def before_backward_pass(self, epoch, step, steps, loss, optimizer=None, return_loss_components=False):
        self.calls.append(("before_backward_pass", epoch, step, steps))
        return loss * self.loss_scale

    def before_parameter_optimization(self, epoch, step, steps, optimizer):
        self.calls.append(("before_parameter_optimization", epoch, step, steps))

    def on_minibatch_end(self, epoch, step, steps, optimizer):
        self.calls.append(("on_minibatch_end", epoch, step, steps))


class SpyOptimizer(torch.optim.SGD):
    def __init__(self, params, log):
        super().__init__(params, lr=0.1)
        self.log = log

    def zero_grad(self, set_to_none=True):
        self.log.append(("zero_grad",))
        super().zero_grad(set_to_none)

    def step(self, closure=None):
        self.log.append(("step",))
        return super().step(closure)


def tiny_data(n=12, classes=3):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 4, generator=g), torch.arange(n) % classes)


def test_hooks_run_in_distillers_order_and_steps_are_capped():
    model = nn.Linear(4, 3)
    recorder = Recorder()
    optimizer = SpyOptimizer(model.parameters(), recorder.calls)
    loader = DataLoader(tiny_data(), batch_size=4)
    stats = train_epoch(model, loader, nn.CrossEntropyLoss(), optimizer, recorder, 7, 2, torch.device("cpu"))
    names = [c[0] for c in recorder.calls]
    one_step = [
        "on_minibatch_begin",
        "before_backward_pass",
        "zero_grad",
        "step",
        "on_minibatch_end",
    ]
    # before_parameter_optimization sits between zero_grad/backward and step
    one_step.insert(3, "before_parameter_optimization")
    assert names == one_step * 2
    assert [c[1:] for c in recorder.calls if c[0] == "on_minibatch_begin"] == [(7, 0, 2), (7, 1, 2)]
    assert stats.steps == 2 and stats.samples == 8


def test_the_loss_returned_by_before_backward_pass_is_differentiated():
    model = nn.Linear(4, 3, bias=False)
    before = model.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    loader = DataLoader(tiny_data(), batch_size=4)
    train_epoch(model, loader, nn.CrossEntropyLoss(), optimizer, Recorder(0.0), 0, 3, torch.device("cpu"))
    assert torch.equal(model.weight, before)  # zero loss -> zero gradient -> no update


def test_non_finite_loss_names_epoch_and_step():
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(tiny_data(), batch_size=4)
    with pytest.raises(TrainingDiverged) as info:
        train_epoch(
            model, loader, nn.CrossEntropyLoss(), optimizer, Recorder(float("nan")), 5, 3, torch.device("cpu")
        )
    assert "epoch 5, step 0" in info.value.message
    assert info.value.exit_code == 3


def test_non_finite_weights_stop_the_run():
    model = nn.Linear(4, 3)

    class Poison(Recorder):
        def on_minibatch_end(self, epoch, step, steps, optimizer):
            if step == 1:
                with torch.no_grad():
                    model.bias[0] = float("inf")

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(tiny_data(), batch_size=4)
    with pytest.raises(TrainingDiverged) as info:
        train_epoch(model, loader, nn.CrossEntropyLoss(), optimizer, Poison(), 2, 3, torch.device("cpu"))
    assert "'bias'" in info.value.message and "epoch 2, step 1" in info.value.message


def test_evaluate_counts_top1_and_top5_by_hand():
    logits = torch.tensor([[9.0, 0, 0, 0, 0, 0], [0, 9.0, 8, 7, 6, 5], [0, 1, 2, 3, 4, 5]])
    targets = torch.tensor([0, 2, 0])  # hit@1, hit@5 only, miss
    model = nn.Identity()
    stats = evaluate(
        model, DataLoader(TensorDataset(logits, targets), batch_size=2), nn.CrossEntropyLoss(), "cpu"
    )
    assert stats.top1 == pytest.approx(1 / 3)
    assert stats.top5 == pytest.approx(2 / 3)
    expected = nn.functional.cross_entropy(logits, targets).item()
    assert stats.loss == pytest.approx(expected, rel=1e-6)


def test_rng_state_survives_a_weights_only_checkpoint():
    seed_everything(11)
    state = rng_state()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=True)
    import random

    import numpy as np

    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    set_rng_state(restored)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_parameter_is_named(bad):
    from prunecli.training.loop import _first_non_finite

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    assert _first_non_finite(model) is None
    with torch.no_grad():
        model[1].bias[2] = bad
        model[2].weight[0, 1] = bad
    assert _first_non_finite(model) == "1.bias"  # the first one, in parameter order


def test_non_finite_check_has_no_false_alarm_and_sees_cancelling_infinities():
    from prunecli.training.loop import _first_non_finite

    model = torch.nn.Linear(1000, 100).half()
    with torch.no_grad():
        model.weight.fill_(60000.0)  # finite, but a float16 sum of it would overflow to inf
    assert _first_non_finite(model) is None
    with torch.no_grad():
        model.weight[0, 0], model.weight[0, 1] = float("inf"), -float("inf")  # sum to NaN, not to 0
    assert _first_non_finite(model) == "weight"
