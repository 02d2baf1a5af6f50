"""NNI's pruners as engine presets: each one's masks on a small model against the reference formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from support.engine import conv_bn_stack
from torch import nn

from prunecli.engine import build_engine_pruner
from prunecli.schedule.native import PRESETS

NNI_PRESETS = (
    "LevelPruner", "L1NormPruner", "L2NormPruner", "FPGMPruner", "SlimPruner", "ActivationAPoZRankPruner",
    "ActivationMeanRankPruner", "TaylorFOWeightPruner", "LinearPruner", "AGPPruner", "MovementPruner", "ADMMPruner",
)  # fmt: skip


def _model() -> nn.Module:
    return conv_bn_stack(6)


EXAMPLE = torch.zeros(1, 3, 6, 6)
META = {"starting_epoch": 0, "ending_epoch": 1, "frequency": 1, "current_epoch": 0}


def _pruner(preset: str, sparsity: float, weights: list[str], model: nn.Module, **extra):
    pruner = build_engine_pruner(
        "p", {"preset": preset, "sparsity": sparsity, "weights": weights, **extra}, model, EXAMPLE
    )
    pruner.attach(model)
    return pruner


def _masks(pruner, model, meta=META) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    pruner.prepare_masks({n: params[n] for n in pruner.params_names}, dict(meta))
    return dict(pruner._masks)


def _pruned_filters(mask: torch.Tensor) -> set[int]:
    return set((mask.reshape(mask.size(0), -1).abs().sum(dim=1) == 0).nonzero().flatten().tolist())


def _lowest(scores: torch.Tensor, k: int) -> set[int]:
    return set(torch.argsort(scores, stable=True)[:k].tolist())


def test_every_nni_pruner_is_a_preset() -> None:
    assert set(NNI_PRESETS) <= set(PRESETS)


def test_level_pruner_zeroes_the_smallest_magnitudes() -> None:
    model = _model()
    w = model[8].weight
    mask = _masks(_pruner("LevelPruner", 0.5, ["8.weight"], model), model)["8.weight"]
    cut = w.abs().flatten().sort().values[11]  # k = int(0.5 * 24) = 12
    assert torch.equal(mask, (w.abs() > cut).float())
    assert int((mask == 0).sum()) == 12


@pytest.mark.parametrize(
    ("preset", "score"),
    [
        ("L1NormPruner", lambda f: f.abs().sum(dim=1)),
        ("L2NormPruner", lambda f: f.pow(2).sum(dim=1).sqrt()),
        ("FPGMPruner", lambda f: torch.stack([(f - f[i]).norm(dim=1).sum() for i in range(f.size(0))])),
    ],
)
def test_weight_rank_presets_remove_the_lowest_filters(preset, score) -> None:
    model = _model()
    masks = _masks(_pruner(preset, 0.5, ["0.weight", "3.weight"], model), model)
    for name, n in (("0.weight", 8), ("3.weight", 6)):
        flat = dict(model.named_parameters())[name].detach().reshape(n, -1)
        assert _pruned_filters(masks[name]) == _lowest(score(flat), n // 2)


def test_slim_pruner_ranks_bn_scales_globally_and_adds_their_l1() -> None:
    model = _model()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4]))
        model[4].weight.copy_(torch.tensor([0.05, 1.0, 0.15, 1.0, 1.0, 1.0]))
    pruner = _pruner("SlimPruner", 0.3, ["0.weight", "3.weight"], model)
    masks = _masks(pruner, model)
    # the weights objective: 0.3 * (8*27 + 6*72) = 194.4 weights. Ascending |gamma| with filter
    # sizes 27 (first conv) and 72 (second): 0.05 (72), 0.1 (99), 0.15 (171), 0.2 (198 >= 194.4)
    assert _pruned_filters(masks["0.weight"]) == {1, 3}
    assert _pruned_filters(masks["3.weight"]) == {0, 2}
    term = pruner.loss_term(model)
    expected = 1e-4 * (model[1].weight.abs().sum() + model[4].weight.abs().sum())
    assert float(term) == pytest.approx(float(expected))


def _train_steps(model: nn.Module, pruner, steps: int = 2) -> list[dict[str, torch.Tensor]]:
    """A few forward/backward passes; returns each step's (weight * grad) per pruned tensor."""
    torch.manual_seed(3)
    products = []
    params = dict(model.named_parameters())
    for _ in range(steps):
        model.zero_grad()
        x = torch.randn(4, 3, 6, 6)
        F.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
        pruner.after_backward(params)
        products.append({n: (params[n] * params[n].grad).detach() for n in pruner.params_names})
    return products


def test_taylor_fo_weight_pruner_sums_abs_weight_times_grad() -> None:
    model = _model()
    pruner = _pruner("TaylorFOWeightPruner", 0.5, ["0.weight"], model)
    products = _train_steps(model, pruner)
    scores = sum(p["0.weight"].abs() for p in products).reshape(8, -1).sum(dim=1)
    assert _pruned_filters(_masks(pruner, model)["0.weight"]) == _lowest(scores, 4)


def test_movement_pruner_keeps_weights_moving_away_from_zero() -> None:
    model = _model()
    pruner = _pruner("MovementPruner", 0.5, ["3.weight"], model, schedule="oneshot")
    products = _train_steps(model, pruner)
    score = -sum(p["3.weight"] for p in products).flatten()
    mask = _masks(pruner, model)["3.weight"].flatten()
    cut = score.sort().values[int(0.5 * score.numel()) - 1]
    assert torch.equal(mask, (score > cut).float())


@pytest.mark.parametrize(
    ("preset", "prune_high"), [("ActivationAPoZRankPruner", True), ("ActivationMeanRankPruner", False)]
)
def test_activation_presets_rank_relu_output_statistics(preset, prune_high) -> None:
    model = _model()
    pruner = _pruner(preset, 0.5, ["0.weight"], model)
    torch.manual_seed(5)
    x = torch.randn(4, 3, 6, 6)
    model.train()
    with torch.no_grad():
        out = F.relu(model[0](x))
        model(x)
    if prune_high:
        statistic = (out == 0).float().mean(dim=(2, 3)).mean(dim=0)
        expected = _lowest(-statistic, 4)
    else:
        statistic = out.mean(dim=(2, 3)).mean(dim=0)
        expected = _lowest(statistic, 4)
    assert _pruned_filters(_masks(pruner, model)["0.weight"]) == expected


@pytest.mark.parametrize(
    ("preset", "formula"),
    [
        ("LinearPruner", lambda t, T, s: s * t / T),
        ("AGPPruner", lambda t, T, s: s - s * (1 - t / T) ** 3),
    ],
)
def test_gradual_presets_follow_their_curve(preset, formula) -> None:
    model = _model()
    pruner = _pruner(preset, 0.8, ["8.weight"], model)
    for epoch in (0, 2, 4, 6):
        meta = {"starting_epoch": 0, "ending_epoch": 7, "frequency": 2, "current_epoch": epoch}
        masks = _masks(pruner, model, meta)
        level = formula(epoch, 6, 0.8)
        zeros = int((masks["8.weight"] == 0).sum()) if masks else 0
        assert zeros == int(level * 24)


def test_admm_updates_z_and_u_then_masks_at_the_end() -> None:
    model = _model()
    pruner = _pruner("ADMMPruner", 0.5, ["8.weight"], model, admm={"rho": 0.5})
    w = model[8].weight

    def project(v: torch.Tensor) -> torch.Tensor:
        cut = v.abs().flatten().sort().values[11]
        return v * (v.abs() > cut)

    first = {**META, "ending_epoch": 3, "current_epoch": 0}
    assert _masks(pruner, model, first) == {}  # ADMM iterations leave the weights unmasked
    w0 = w.detach().clone()
    assert torch.equal(pruner.admm.z["8.weight"], project(w0))
    assert pruner.admm.u["8.weight"].abs().sum() == 0
    # the augmented Lagrangian term: rho/2 ||W - Z + U||^2
    assert float(pruner.loss_term(model)) == pytest.approx(float(0.25 * (w0 - project(w0)).pow(2).sum()))
    with torch.no_grad():
        w.add_(0.01)  # a training step
    _masks(pruner, model, {**first, "current_epoch": 1})
    w1 = w.detach().clone()
    # Boyd's (and NNI's) order: Z = project(W + U) with the previous U (0), then U = U + W - Z
    z1 = project(w1)
    assert torch.allclose(pruner.admm.z["8.weight"], z1)
    assert torch.allclose(pruner.admm.u["8.weight"], w1 - z1)
    assert float(pruner.loss_term(model)) == pytest.approx(float(0.25 * (w1 - z1 + (w1 - z1)).pow(2).sum()))
    final = _masks(pruner, model, {**first, "current_epoch": 2})
    assert torch.equal(final["8.weight"], (w1.abs() > w1.abs().flatten().sort().values[11]).float())


@pytest.mark.parametrize(
    ("distiller", "native", "policy"),
    [
        (
            "class: AutomatedGradualPruner\n    initial_sparsity: 0.05\n    final_sparsity: 0.7",
            "target: element\n    metric: l1\n    schedule: {kind: agp, initial: 0.05}\n    sparsity: 0.7",
            "starting_epoch: 0\n    ending_epoch: 7\n    frequency: 2",
        ),
        (
            "class: L1RankedStructureParameterPruner\n    group_type: Filters\n    desired_sparsity: 0.5",
            "target: filters\n    metric: l1\n    sparsity: 0.5",
            "epochs: [0]",
        ),
        (
            "class: L2RankedStructureParameterPruner\n    group_type: Channels\n    desired_sparsity: 0.5",
            "target: channels\n    metric: l2\n    sparsity: 0.5",
            "epochs: [0]",
        ),
    ],
)
def test_distiller_classes_and_their_engine_decomposition_give_identical_masks(
    distiller, native, policy
) -> None:
    """The decomposition table in docs/pruning-engine.md, checked bit for bit on a short run."""
    from prunecli.compression import build_scheduler
    from prunecli.schedule import load_schedule

    def masks_of(entry: str) -> list[dict[str, torch.Tensor]]:
        text = (
            f"version: 1\npruners:\n  p:\n    {entry}\n    weights: ['0.weight', '3.weight']\n"
            f"policies:\n  - pruner: {{instance_name: p}}\n    {policy}\n"
        )
        model = _model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        scheduler = build_scheduler(load_schedule("p.yaml", text=text), model, optimizer)
        torch.manual_seed(1)
        seen = []
        for epoch in range(7):
            scheduler.on_epoch_begin(epoch, optimizer)
            scheduler.on_minibatch_begin(epoch, 0, 1, optimizer)
            loss = F.cross_entropy(model(torch.randn(4, 3, 6, 6)), torch.tensor([0, 1, 2, 3]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.on_minibatch_end(epoch, 0, 1, optimizer)
            scheduler.on_epoch_end(epoch, optimizer)
            seen.append({n: m.clone() for n, m in scheduler.masks.items() if m is not None})
        return seen

    reference, engine = masks_of(distiller), masks_of(native)
    assert any(reference)  # something was pruned
    for ours, theirs in zip(engine, reference):
        assert ours.keys() == theirs.keys()
        for name in ours:
            assert torch.equal(ours[name], theirs[name]), name
