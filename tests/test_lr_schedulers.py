import pytest
import torch
from support.compression import TinyCNN, make_schedule, train

from prunecli.compression import build_scheduler
from prunecli.errors import ScheduleError
from prunecli.lr import LR_SCHEDULERS, MultiStepMultiGammaLR, PolynomialLR, build_lr_scheduler, step_to_epoch


def _opt(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_registry_holds_torch_and_distiller_classes():
    for name in (
        "StepLR",
        "MultiStepLR",
        "ExponentialLR",
        "ReduceLROnPlateau",
        "CosineAnnealingLR",
        "LambdaLR",
    ):
        assert name in LR_SCHEDULERS
    assert LR_SCHEDULERS["PolynomialLR"] is PolynomialLR  # Distiller's shadows torch's
    assert LR_SCHEDULERS["MultiStepMultiGammaLR"] is MultiStepMultiGammaLR


def test_polynomial_lr_formula():
    opt = _opt(0.5)
    sched = build_lr_scheduler("PolynomialLR", opt, {"t_max": 10, "power": 2})
    for epoch in (1, 4, 9):
        step_to_epoch(sched, epoch)
        assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * (1 - epoch / 10) ** 2)


def test_multistep_multigamma():
    opt = _opt(1.0)
    sched = MultiStepMultiGammaLR(opt, milestones=[80, 120, 160], gammas=[0.1, 0.1, 0.2])
    expected = {0: 1.0, 79: 1.0, 80: 0.1, 119: 0.1, 120: 0.01, 160: 0.002, 199: 0.002}
    for epoch, lr in expected.items():
        step_to_epoch(sched, epoch)
        assert opt.param_groups[0]["lr"] == pytest.approx(lr)
    with pytest.raises(ValueError):
        MultiStepMultiGammaLR(_opt(), milestones=[5, 3], gammas=[0.1, 0.1])


def test_lr_policy_steps_to_epoch_plus_one():
    model = TinyCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = make_schedule(
        {"lr_schedulers": {"lr": ("StepLR", {"step_size": 2, "gamma": 0.5})}},
        [("lr_scheduler", "lr", {"starting_epoch": 0, "ending_epoch": 10, "frequency": 1}, None)],
    )
    sched = build_scheduler(schedule, model, opt)
    seen = []
    for epoch in range(5):
        sched.on_epoch_end(epoch, opt)
        seen.append(opt.param_groups[0]["lr"])
    # after epoch e the rate is base * gamma ** ((e + 1) // step)
    assert seen == pytest.approx([0.1 * 0.5 ** ((e + 1) // 2) for e in range(5)])


def test_reduce_on_plateau_reads_metric_by_mode():
    model = TinyCNN()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    schedule = make_schedule(
        {"lr_schedulers": {"lr": ("ReduceLROnPlateau", {"mode": "max", "patience": 0, "factor": 0.5})}},
        [("lr_scheduler", "lr", {"starting_epoch": 0, "ending_epoch": 5, "frequency": 1}, None)],
    )
    sched = build_scheduler(schedule, model, opt)
    sched.on_epoch_end(0, opt, metrics={"min": 9.0, "max": 0.5})
    sched.on_epoch_end(1, opt, metrics={"min": 1.0, "max": 0.4})  # top1 fell: reduce, loss ignored
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)


def test_lr_policies_run_after_others_and_bad_args_reported():
    model = TinyCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = make_schedule(
        {
            "lr_schedulers": {"lr": ("ExponentialLR", {"gamma": 0.9})},
            "pruners": {"p": ("SparsityLevelParameterPruner", {"levels": {"fc.weight": 0.5}})},
        },
        [
            ("lr_scheduler", "lr", {"starting_epoch": 0, "ending_epoch": 3, "frequency": 1}, None),
            ("pruner", "p", {"epochs": [0]}, None),
        ],
    )
    sched = build_scheduler(schedule, model, opt)
    kinds = [type(p).__name__ for p in sched.policies[0]]
    assert kinds == ["PruningPolicy", "LRPolicy"]
    train(sched, model, opt, epochs=2, steps=1)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.9**2)
    bad = make_schedule({"lr_schedulers": {"lr": ("StepLR", {"gama": 0.9})}}, [])
    with pytest.raises(ScheduleError, match="gama"):
        build_scheduler(bad, model, opt)


@pytest.mark.parametrize(
    "name,args", [("MultiStepLR", {"milestones": [1, 3], "gamma": 0.5}), ("StepLR", {"step_size": 2})]
)
def test_lr_state_survives_a_weights_only_checkpoint(tmp_path, name, args):
    from prunecli.checkpoint import save_checkpoint

    def build():
        model = TinyCNN()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        schedule = make_schedule(
            {"lr_schedulers": {"lr": (name, args)}},
            [("lr_scheduler", "lr", {"starting_epoch": 0, "ending_epoch": 10, "frequency": 1}, None)],
        )
        return build_scheduler(schedule, model, opt), opt

    sched, opt = build()
    for epoch in range(2):
        sched.on_epoch_end(epoch, opt)
    save_checkpoint(tmp_path / "c.pt", {"arch": "tiny", "state_dict": {}, "scheduler": sched.state_dict()})
    resumed, resumed_opt = build()
    resumed.load_state_dict(torch.load(tmp_path / "c.pt", weights_only=True)["scheduler"])
    resumed_opt.param_groups[0]["lr"] = opt.param_groups[0]["lr"]
    for epoch in range(2, 6):  # both continue identically, milestones included
        sched.on_epoch_end(epoch, opt)
        resumed.on_epoch_end(epoch, resumed_opt)
        assert resumed_opt.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * (0.5**2 if name == "MultiStepLR" else 0.1**3))
