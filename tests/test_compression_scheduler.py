import copy

import pytest
import torch
from support.compression import TinyCNN, make_schedule, sparsity, train

from prunecli.compression import CompressionScheduler, PolicyLoss, build_scheduler
from prunecli.errors import CheckpointError, ScheduleError

AGP = {
    "pruners": {
        "agp": (
            "AutomatedGradualPruner",
            {"initial_sparsity": 0.2, "final_sparsity": 0.8, "weights": ["conv2.weight", "fc.weight"]},
        )
    }
}
AGP_POLICY = [("pruner", "agp", {"starting_epoch": 0, "ending_epoch": 4, "frequency": 1}, None)]

OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-3),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
}


def _setup(opt="sgd", schedule=None, seed=0):
    torch.manual_seed(seed)
    model = TinyCNN()
    optimizer = OPTIMIZERS[opt](model.parameters())
    sched = build_scheduler(schedule or make_schedule(AGP, AGP_POLICY), model, optimizer)
    return model, optimizer, sched


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_masked_weights_exactly_zero_after_every_step(opt):
    model, optimizer, sched = _setup(opt)
    params = dict(model.named_parameters())

    def check(epoch, step):
        for name, mask in sched.masks.items():
            if mask is not None:
                assert (params[name][mask == 0] == 0).all()

    train(sched, model, optimizer, epochs=6, check=check)  # epochs 4, 5 have no policy: still masked
    assert sched.masks["conv2.weight"] is not None


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_masks_survive_state_dict_round_trip(opt):
    model, optimizer, sched = _setup(opt)
    train(sched, model, optimizer, epochs=2)
    state = copy.deepcopy(sched.state_dict())
    for value in state["masks"].values():
        assert type(value) is torch.Tensor
    model2 = copy.deepcopy(model)
    with torch.no_grad():
        for p in model2.parameters():
            p.add_(0.5)  # un-zero everything: loading must re-mask
    opt2 = OPTIMIZERS[opt](model2.parameters())
    sched2 = build_scheduler(make_schedule(AGP, AGP_POLICY), model2, opt2)
    sched2.load_state_dict(state)
    mask = sched2.masks["conv2.weight"]
    assert torch.equal(mask, sched.masks["conv2.weight"])
    assert (model2.conv2.weight[mask == 0] == 0).all()
    train(sched2, model2, opt2, epochs=3, start_epoch=2)
    assert (model2.conv2.weight[sched2.masks["conv2.weight"] == 0] == 0).all()


def test_resume_reproduces_uninterrupted_run():
    schedule = make_schedule(
        {"pruners": {"s": ("SensitivityPruner", {"sensitivities": {"conv2.weight": 0.5, "fc.weight": 0.8}})}},
        [("pruner", "s", {"starting_epoch": 0, "ending_epoch": 4, "frequency": 1}, None)],
    )
    model, optimizer, sched = _setup("sgd", schedule)
    train(sched, model, optimizer, epochs=4)
    full = {k: v.clone() for k, v in model.state_dict().items()}

    model_a, opt_a, sched_a = _setup("sgd", schedule)
    train(sched_a, model_a, opt_a, epochs=2)
    saved = copy.deepcopy(
        {"model": model_a.state_dict(), "opt": opt_a.state_dict(), "sched": sched_a.state_dict()}
    )
    assert saved["sched"]["policies"]  # SensitivityPruner's frozen std travels with the state
    torch.manual_seed(123)
    model_b = TinyCNN()
    opt_b = OPTIMIZERS["sgd"](model_b.parameters())
    sched_b = build_scheduler(schedule, model_b, opt_b)
    model_b.load_state_dict(saved["model"])
    opt_b.load_state_dict(saved["opt"])
    sched_b.load_state_dict(saved["sched"])
    train(sched_b, model_b, opt_b, epochs=4, start_epoch=2)
    for key, value in model_b.state_dict().items():
        assert torch.allclose(value, full[key], atol=1e-6), key


def test_load_state_refuses_other_schedule():
    model, optimizer, sched = _setup()
    other = make_schedule(
        AGP, AGP_POLICY + [("pruner", "agp", {"starting_epoch": 5, "ending_epoch": 8, "frequency": 1}, None)]
    )
    sched2 = build_scheduler(other, TinyCNN(), torch.optim.SGD(TinyCNN().parameters(), lr=0.1))
    with pytest.raises(CheckpointError):
        sched2.load_state_dict(sched.state_dict())


def test_dispatch_order_and_epoch_gating():
    calls = []

    class Spy:
        name = "spy"

        def __getattr__(self, hook):
            return lambda *a, **k: calls.append(hook)

    model = TinyCNN()
    sched = CompressionScheduler(model)
    sched.add_policy(Spy(), epochs=[1])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train(sched, model, opt, epochs=2, steps=1)
    assert calls == [
        "on_epoch_begin",
        "on_minibatch_begin",
        "before_backward_pass",
        "before_parameter_optimization",
        "on_minibatch_end",
        "on_epoch_end",
    ]


def test_metadata_range_and_list_forms():
    sched = CompressionScheduler(TinyCNN())

    class P:
        name = "p"

    a, b = P(), P()
    sched.add_policy(a, starting_epoch=2, ending_epoch=9, frequency=3)
    sched.add_policy(b, epochs=[1, 4])
    assert sorted(sched.policies) == [1, 2, 4, 5, 8]
    assert sched.sched_metadata[a] == {"starting_epoch": 2, "ending_epoch": 9, "frequency": 3}
    assert sched.sched_metadata[b] == {"starting_epoch": 1, "ending_epoch": 5, "frequency": None}
    with pytest.raises(ValueError):
        sched.add_policy(P(), starting_epoch=3, ending_epoch=3, frequency=1)


def test_add_policy_needs_exactly_one_form_of_epochs():
    """Distiller asserts: either an epochs list or a range, never neither and never both."""
    sched = CompressionScheduler(TinyCNN())

    class P:
        name = "p"

    with pytest.raises(ValueError, match="neither was given"):
        sched.add_policy(P())
    with pytest.raises(ValueError, match="not both"):
        sched.add_policy(P(), epochs=[0, 1], starting_epoch=0, ending_epoch=2)
    with pytest.raises(ValueError, match="needs both starting_epoch and ending_epoch"):
        sched.add_policy(P(), ending_epoch=4)
    assert sched.policies == {}  # nothing half-added
    sched.add_policy(P(), epochs=[3], frequency=1)  # frequency keeps its default with a list, as in Distiller
    assert sorted(sched.policies) == [3]


def test_regularization_loss_components():
    schedule = make_schedule(
        {"regularizers": {"l1": ("L1Regularizer", {"reg_regims": {"conv1.weight": 0.01}})}},
        [("regularizer", "l1", {"epochs": [0]}, None)],
    )
    model, optimizer, sched = _setup("sgd", schedule)
    loss = torch.tensor(1.5)
    out = sched.before_backward_pass(0, 0, 1, loss, optimizer, return_loss_components=True)
    assert isinstance(out, PolicyLoss)
    expected = 0.01 * model.conv1.weight.abs().sum()
    assert torch.allclose(out.loss_components["L1Regularizer_loss"], expected)
    assert torch.allclose(out.overall_loss, 1.5 + expected)
    assert torch.equal(sched.before_backward_pass(1, 0, 1, loss, optimizer), loss)  # not scheduled at epoch 1



def test_all_problems_reported_together():
    schedule = make_schedule(
        {
            "pruners": {
                "a": ("NoSuchPruner", {}),
                "b": (
                    "AutomatedGradualPruner",
                    {"initial_sparsity": 0.1, "final_sparsity": 0.5, "weights": ["nope.weight"]},
                ),
                "c": ("SparsityLevelParameterPruner", {"levels": {"*": 0.5}, "bogus": 1}),
                "d": (
                    "AutomatedGradualPruner",
                    {"initial_sparsity": 0.1, "final_sparsity": 0.5, "weights": ["fc.weight"]},
                ),
            }
        },
        [
            ("pruner", "d", {"epochs": [0, 1]}, None),
            ("pruner", "d", {"starting_epoch": 0, "ending_epoch": 5, "frequency": 1}, {"not_an_arg": True}),
        ],
    )
    with pytest.raises(ScheduleError) as info:
        build_scheduler(schedule, TinyCNN(), None)
    text = str(info.value)
    for needle in ("NoSuchPruner", "nope.weight", "bogus", "AGP needs", "not_an_arg"):
        assert needle in text
    assert all(p.hint for p in info.value.problems)


def test_agp_follows_timeline():
    schedule = make_schedule(
        {
            "pruners": {
                "agp": (
                    "AutomatedGradualPruner",
                    {"initial_sparsity": 0.1, "final_sparsity": 0.5, "weights": ["conv2.weight"]},
                )
            }
        },
        [("pruner", "agp", {"starting_epoch": 0, "ending_epoch": 30, "frequency": 2}, None)],
    )
    model, optimizer, sched = _setup("sgd", schedule)
    numel = model.conv2.weight.numel()
    for epoch in range(0, 30):
        sched.on_epoch_begin(epoch)
        sched.on_minibatch_begin(epoch, 0, 1, optimizer)
        if epoch % 2 == 0:
            target = 0.5 + (0.1 - 0.5) * (1 - epoch / 28) ** 3
            assert int((sched.masks["conv2.weight"] == 0).sum()) == int(target * numel), epoch
        sched.on_minibatch_end(epoch, 0, 1, optimizer)
        sched.on_epoch_end(epoch, optimizer)
    assert sparsity(model.conv2.weight) == pytest.approx(int(0.5 * numel) / numel)
    # epoch 14 of the resnet20 example: 0.45
    assert pytest.approx(0.45) == 0.5 - 0.4 * 0.5**3


def test_mask_on_forward_only_lets_step_move_weights_and_keep_mask_finalizes():
    schedule = make_schedule(
        {"pruners": {"lvl": ("SparsityLevelParameterPruner", {"levels": {"fc.weight": 0.5}})}},
        [("pruner", "lvl", {"epochs": [0]}, {"mask_on_forward_only": True, "keep_mask": True})],
    )
    model, optimizer, sched = _setup("sgd", schedule)
    seen = []
    train(
        sched, model, optimizer, epochs=1, steps=1, check=lambda e, s: seen.append(sparsity(model.fc.weight))
    )
    assert seen[0] < 0.5  # after the step the masked weights moved (not re-masked)
    assert sparsity(model.fc.weight) == pytest.approx(0.5)  # keep_mask re-masked at the last epoch's end
    assert sched.zeros_mask_dict["fc.weight"].mask_on_forward_only is False


def test_use_double_copies_restores_dense_weights_before_step():
    schedule = make_schedule(
        {"pruners": {"lvl": ("SparsityLevelParameterPruner", {"levels": {"fc.weight": 0.5}})}},
        [("pruner", "lvl", {"epochs": [0]}, {"use_double_copies": True, "mask_on_forward_only": True})],
    )
    model, optimizer, sched = _setup("sgd", schedule)
    dense = model.fc.weight.detach().clone()
    sched.on_epoch_begin(0)
    sched.on_minibatch_begin(0, 0, 1, optimizer)
    assert sparsity(model.fc.weight) == pytest.approx(0.5)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    sched.before_parameter_optimization(0, 0, 1, optimizer)
    assert torch.equal(model.fc.weight.detach(), dense)


def test_discard_masks_and_minibatch_frequency():
    schedule = make_schedule(
        {
            "pruners": {
                "b": (
                    "BernoulliFilterPruner",
                    {"group_type": "Filters", "desired_sparsity": 0.5, "weights": ["conv2.weight"]},
                )
            }
        },
        [
            (
                "pruner",
                "b",
                {"epochs": [0]},
                {"discard_masks_at_minibatch_end": True, "mini_batch_pruning_frequency": 1},
            )
        ],
    )
    model, optimizer, sched = _setup("sgd", schedule)
    sched.on_epoch_begin(0)
    assert sched.masks["conv2.weight"] is not None
    sched.on_minibatch_begin(0, 0, 3, optimizer)
    sched.on_minibatch_end(0, 0, 3, optimizer)
    assert sched.masks["conv2.weight"] is None
    sched.on_minibatch_begin(0, 1, 3, optimizer)  # recomputed at every minibatch
    assert sched.masks["conv2.weight"] is not None


def test_mask_gradients_requires_forward_only():
    schedule = make_schedule(
        {"pruners": {"lvl": ("SparsityLevelParameterPruner", {"levels": {"fc.weight": 0.5}})}},
        [("pruner", "lvl", {"epochs": [0]}, {"mask_gradients": True})],
    )
    with pytest.raises(ScheduleError, match="mask_gradients"):
        build_scheduler(schedule, TinyCNN(), None)


def test_mask_gradients_zeroes_masked_gradients():
    schedule = make_schedule(
        {"pruners": {"lvl": ("SparsityLevelParameterPruner", {"levels": {"fc.weight": 0.5}})}},
        [("pruner", "lvl", {"epochs": [0, 1]}, {"mask_gradients": True, "mask_on_forward_only": True})],
    )
    model, optimizer, sched = _setup("sgd", schedule)
    sched.on_epoch_begin(0)
    sched.on_minibatch_begin(0, 0, 1, optimizer)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    mask = sched.masks["fc.weight"]
    assert (model.fc.weight.grad[mask == 0] == 0).all()
    assert (model.fc.weight.grad[mask == 1] != 0).any()


def test_state_loads_with_weights_only(tmp_path):
    schedule = make_schedule(
        {
            "pruners": {
                "act": (
                    "ActivationAPoZRankedFilterPruner_AGP",
                    {
                        "initial_sparsity": 0.1,
                        "final_sparsity": 0.5,
                        "group_type": "Filters",
                        "weights": ["conv2.weight"],
                    },
                ),
                "spl": (
                    "SplicingPruner",
                    {"sensitivities": {"fc.weight": 0.2}, "low_thresh_mult": 0.9, "hi_thresh_mult": 1.1},
                ),
            },
            "lr_schedulers": {"lr": ("MultiStepMultiGammaLR", {"milestones": [1, 2], "gammas": [0.5, 0.5]})},
        },
        [
            ("pruner", "act", {"starting_epoch": 0, "ending_epoch": 3, "frequency": 1}, None),
            (
                "pruner",
                "spl",
                {"starting_epoch": 0, "ending_epoch": 3, "frequency": 1},
                {"mini_batch_pruning_frequency": 1},
            ),
            ("lr_scheduler", "lr", {"starting_epoch": 0, "ending_epoch": 3, "frequency": 1}, None),
        ],
    )
    model, optimizer, sched = _setup("sgd", schedule)
    train(sched, model, optimizer, epochs=2, steps=2)
    torch.save(sched.state_dict(), tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    model2 = copy.deepcopy(model)
    opt2 = OPTIMIZERS["sgd"](model2.parameters())
    sched2 = build_scheduler(schedule, model2, opt2)
    sched2.load_state_dict(state)
    assert sched2.state_dict()["policies"].keys() == state["policies"].keys()
    lr_state = next(v for k, v in state["policies"].items() if k.endswith(":lr"))
    assert lr_state["lr_scheduler"]["last_epoch"] == 2
    for name, mask in sched.masks.items():
        other = sched2.masks[name]
        assert (mask is None and other is None) or torch.equal(mask, other)


def test_skip_first_minibatch_delays_the_first_masks():
    schedule = make_schedule(
        {"pruners": {"lvl": ("SparsityLevelParameterPruner", {"levels": {"fc.weight": 0.5}})}},
        [("pruner", "lvl", {"epochs": [0]}, {"skip_first_minibatch": True})],
    )
    model, optimizer, sched = _setup("sgd", schedule)
    sched.on_epoch_begin(0)
    assert sched.masks["fc.weight"] is None
    sched.on_minibatch_begin(0, 0, 3, optimizer)
    assert sched.masks["fc.weight"] is None and sparsity(model.fc.weight) == 0
    sched.on_minibatch_begin(0, 1, 3, optimizer)  # global minibatch 1: masks computed and applied
    assert sparsity(model.fc.weight) == pytest.approx(0.5)


def test_policy_levels_override_pruner_levels():
    schedule = make_schedule(
        {"pruners": {"lvl": ("SparsityLevelParameterPruner", {"levels": {"fc.weight": 0.2}})}},
        [("pruner", "lvl", {"epochs": [0]}, {"levels": {"fc.weight": 0.7, "conv2.weight": 0.1}})],
    )
    model, optimizer, sched = _setup("sgd", schedule)
    train(sched, model, optimizer, epochs=1, steps=1)
    assert sparsity(model.fc.weight) == pytest.approx(int(0.7 * 160) / 160)
    assert sparsity(model.conv2.weight) == pytest.approx(int(0.1 * 1152) / 1152)
