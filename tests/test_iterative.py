"""The iterative loop: generator sequences against their formulas, the levels reached, the lottery
ticket's weight reset, budget refusals and the choice of the best result."""

from __future__ import annotations

import copy

import pytest
import torch

from prunecli.errors import ConfigError
from prunecli.iterative import (
    Budget,
    LevelPruner,
    MaskEnforcer,
    PruningScheduler,
    SearchSpace,
    build_generator,
)
from prunecli.iterative.pruning import IterativePruningError
from prunecli.iterative.scheduler import BudgetUnreachable
from prunecli.iterative.task import BudgetError, Measurements, Task, TaskGenerator, TaskResult
from tests.support.iterative import EXAMPLE, TwoConv


def space(budget: str, iterations: int) -> SearchSpace:
    return SearchSpace({}, Budget.parse(budget), Measurements(), iterations=iterations)


def goals(name: str, budget: str, iterations: int, **options) -> list[float]:
    """Every goal a generator proposes, feeding it results that simply echo its tasks."""
    generator = build_generator(name, {"iterations": iterations, **options})
    tasks = list(generator.initial_tasks(space(budget, iterations)))
    out = []
    while tasks:
        task = tasks.pop(0)
        out.append(task.goal.value)
        result = TaskResult(task, 0.0, Measurements(), {}, True)
        tasks.extend(generator.next_tasks(result))
    return out


@pytest.mark.parametrize(
    "name, removed",
    [
        # NNI's AGPTaskGenerator: total sparsity s * (1 - (1 - i/T)^3)
        ("agp", lambda i, t, s: s * (1 - (1 - i / t) ** 3)),
        ("linear", lambda i, t, s: s * i / t),
        # lottery ticket: 1 - (1 - s)^(i/T)
        ("lottery_ticket", lambda i, t, s: 1 - (1 - s) ** (i / t)),
    ],
)
def test_generator_goals_follow_their_formula(name, removed):
    got = goals(name, "macs <= 0.25", 5)
    expected = [1 - removed(i, 5, 0.75) for i in range(1, 6)]
    assert got == pytest.approx(expected, abs=1e-12)
    assert got[-1] == pytest.approx(0.25)


def test_agp_goals_written_out():
    # T = 4, budget keep 0.4 (s = 0.6): 1 - 0.6 * (1 - (1 - i/4)^3)
    assert goals("agp", "params <= 0.4", 4) == pytest.approx([0.653125, 0.475, 0.409375, 0.4])


def test_lottery_levels_written_out():
    # level 1 - (1 - 0.75)^(i/2): 0.5, 0.75 -> keep 0.5, 0.25
    assert goals("lottery_ticket", "weights <= 0.25", 2) == pytest.approx([0.5, 0.25])


def run(
    generator,
    budget: str,
    iterations: int,
    target="element",
    finetuner=None,
    evaluator=None,
    pruner_metric="l1",
    **kw,
):
    torch.manual_seed(0)
    model = TwoConv()
    scheduler = PruningScheduler(
        LevelPruner(target, pruner_metric),
        generator,
        finetuner=finetuner,
        evaluator=evaluator,
        model=model,
        example_input=EXAMPLE,
        budget=budget,
        iterations=iterations,
        **kw,
    )
    scheduler.compress()
    return scheduler, model


def test_agp_reaches_each_goal_on_the_pruned_weights():
    scheduler, _ = run(build_generator("agp"), "weights <= 0.2", 3)
    reached = [r.measured.weights for r in scheduler.results]
    # 1 - 0.8 (1 - (1 - i/3)^3) for i = 1..3, met to within one weight of the 990 pruned
    expected = [1 - 0.8 * (1 - (1 - i / 3) ** 3) for i in (1, 2, 3)]
    for got, want in zip(reached, expected):
        assert want - 2 / 990 <= got <= want + 1e-9
    assert [r.meets_budget for r in scheduler.results] == [False, False, True]
    # the classifier is not pruned by default
    assert "fc.weight" not in scheduler.results[-1].levels


def test_filters_goal_on_macs_matches_a_hand_count_after_thinning():
    scheduler, _ = run(build_generator("linear"), "macs <= 0.3", 1, target="filters")
    best = scheduler.get_best_result()
    assert best is not None
    conv1, conv2 = best.model.conv1.out_channels, best.model.conv2.out_channels
    macs = 64 * conv1 * 9 + 64 * conv2 * conv1 * 9 + conv2 * 10
    assert best.result.measured.macs == pytest.approx(macs / 63460)
    assert best.result.measured.macs <= 0.3
    # the least pruning that meets the goal: one filter fewer pruned would not
    wider = 64 * (conv1 + 1) * 9 + 64 * (conv2 + 1) * (conv1 + 1) * 9 + (conv2 + 1) * 10
    assert wider / 63460 > 0.3


def test_lottery_ticket_resets_survivors_to_their_initial_values():
    torch.manual_seed(0)
    model = TwoConv()
    initial = copy.deepcopy(model.state_dict())
    seen = []

    def finetuner(m):
        seen.append({k: v.detach().clone() for k, v in m.state_dict().items()})
        with torch.no_grad():  # "training": a deterministic change that re-ranks the weights
            for p in (m.conv1.weight, m.conv2.weight):
                p.copy_(torch.arange(p.numel(), dtype=p.dtype).reshape(p.shape) + 1)

    scheduler = PruningScheduler(
        LevelPruner("element", "l1"),
        build_generator("lottery_ticket"),
        finetuner=finetuner,
        model=model,
        example_input=EXAMPLE,
        budget="weights <= 0.25",
        iterations=2,
    )
    scheduler.compress()
    for state in seen:
        for name in ("conv1.weight", "conv2.weight"):
            alive = state[name] != 0
            assert torch.equal(state[name][alive], initial[name][alive])
    # iteration 2 ranks the weights fine-tuning left (value = index + 1 on iteration 1's survivors):
    # the survivors with the largest indices stay
    first = (seen[0]["conv2.weight"].flatten() != 0).nonzero().flatten()
    second = (seen[1]["conv2.weight"].flatten() != 0).nonzero().flatten()
    assert 0 < second.numel() < first.numel()
    assert torch.equal(second, first[-second.numel() :])


def test_reset_weight_flag_resets_survivors_for_any_generator():
    torch.manual_seed(0)
    model = TwoConv()
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    seen = []

    def finetuner(m):
        seen.append(m.conv2.weight.detach().clone())
        with torch.no_grad():
            m.conv2.weight.mul_(3.0)  # training moves the weights away from their initial values

    PruningScheduler(
        LevelPruner("element", "l1"),
        build_generator("agp"),
        finetuner=finetuner,
        reset_weight=True,
        model=model,
        example_input=EXAMPLE,
        budget="weights <= 0.3",
        iterations=2,
    ).compress()
    for weight in seen:
        alive = weight != 0
        assert torch.equal(weight[alive], initial["conv2.weight"][alive])


def test_lottery_ticket_reset_after_thinning_slices_the_initial_weights():
    torch.manual_seed(0)
    model = TwoConv()
    initial = copy.deepcopy(model.state_dict())
    seen = []
    scheduler = PruningScheduler(
        LevelPruner("filters", "l1"),
        build_generator("lottery_ticket"),
        finetuner=lambda m: seen.append(copy.deepcopy(m)),
        model=model,
        example_input=EXAMPLE,
        budget="macs <= 0.5",
        iterations=2,
    )
    scheduler.compress()
    thin = seen[-1]
    assert thin.conv1.out_channels < 10
    for row in thin.conv1.weight:
        assert any(torch.equal(row, original) for original in initial["conv1.weight"])


def test_lottery_ticket_rewind_resets_survivors_to_the_rewind_point():
    torch.manual_seed(0)
    model = TwoConv()
    rewind = {k: v.detach().clone() + 0.5 for k, v in model.state_dict().items()}  # "after epoch k"
    seen = []
    scheduler = PruningScheduler(
        LevelPruner("element", "l1"),
        build_generator("lottery_ticket", {"reset_to": "rewind"}),
        finetuner=lambda m: seen.append({k: v.detach().clone() for k, v in m.state_dict().items()}),
        model=model,
        example_input=EXAMPLE,
        budget="weights <= 0.5",
        iterations=1,
        rewind_state=rewind,
    )
    scheduler.compress()
    weight = seen[0]["conv2.weight"]
    alive = weight != 0
    assert 0 < int(alive.sum()) < weight.numel()
    assert torch.equal(weight[alive], rewind["conv2.weight"][alive])


def test_rewind_without_a_recorded_rewind_point_is_refused():
    with pytest.raises(ConfigError, match="rewind"):
        run(build_generator("lottery_ticket", {"reset_to": "rewind"}), "weights <= 0.5", 1)


def test_user_generator_and_best_result_among_those_meeting_the_budget():
    scores = iter([0.5, 0.9, 0.7])
    generator = build_generator("tests.support.iterative:ScriptedGoals", {"goals": [0.3, 0.5, 0.35]})
    scheduler, _ = run(generator, "weights <= 0.4", 3, evaluator=lambda m: next(scores))
    assert [r.meets_budget for r in scheduler.results] == [True, False, True]
    task_id, model, masks, score, levels = scheduler.get_best_result()
    assert (task_id, score) == (2, 0.7)  # 0.9 scored higher but kept half of the weights


def test_no_result_meeting_the_budget_means_no_best():
    generator = build_generator("tests.support.iterative:ScriptedGoals", {"goals": [0.8]})
    scheduler, _ = run(generator, "weights <= 0.4", 1)
    assert scheduler.get_best_result() is None


def test_budget_no_allocation_can_meet_is_refused_with_the_smallest_reachable_value():
    # every layer at 0.9 of its filters: conv1 keeps 1 of 10, conv2 keeps 1 (with 1 input), fc sees 1
    smallest = (64 * 1 * 9 + 64 * 1 * 1 * 9 + 1 * 10) / 63460
    with pytest.raises(BudgetUnreachable) as info:
        run(build_generator("agp"), "macs <= 0.01", 3, target="filters")
    assert f"{smallest:.4f}" in info.value.message
    assert "max_sparsity_per_layer 0.9" in info.value.message


@pytest.mark.parametrize("iterations", [0, -2])
def test_non_positive_iteration_count_is_refused(iterations):
    with pytest.raises(ConfigError, match="positive"):
        run(build_generator("agp"), "macs <= 0.5", iterations)


def test_unknown_budget_metric_suggests_the_near_one():
    with pytest.raises(BudgetError) as info:
        Budget.parse("mac <= 0.4")
    assert "did you mean 'macs'" in info.value.hint
    with pytest.raises(BudgetError, match="ratio"):
        Budget.parse("params <= 1.5")


def test_ratio_generators_refuse_a_latency_budget():
    generator = build_generator("agp")
    with pytest.raises(ValueError, match="latency_ms"):
        generator.initial_tasks(space("latency_ms <= 3", 2))


def test_mask_enforcer_keeps_masked_weights_at_zero_while_user_code_trains():
    torch.manual_seed(0)
    model = TwoConv()
    mask = (torch.rand_like(model.conv2.weight) > 0.5).float()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    with MaskEnforcer(model, {"conv2.weight": mask}):
        for _ in range(3):
            optimizer.zero_grad()
            model(torch.randn(4, 1, 8, 8)).square().sum().backward()
            optimizer.step()
    assert bool((model.conv2.weight[mask == 0] == 0).all())
    assert bool((model.conv2.weight[mask == 1] != 0).all())


def test_task_and_result_round_trip_as_plain_data():
    task = Task(3, {"conv1.weight": 0.25}, start_from="initial", goal=Budget("macs", 0.5), note="n")
    result = TaskResult(task, 0.75, Measurements(0.5, 0.6, 0.4, 1.5, {"macs": 3}), {"a": 0.1}, True, "x.pt")
    assert TaskResult.from_dict(result.to_dict()) == result


class HalfLevels(TaskGenerator):
    """One task: every prunable tensor at level 0.5 (a user generator giving per-tensor levels)."""

    def initial_tasks(self, space):
        return [Task(index=0, levels=dict.fromkeys(space.shares, 0.5))]

    def next_tasks(self, result):
        return []


@pytest.mark.parametrize("bound, meets", [(1e6, True), (1e-6, False)])
def test_a_latency_budget_is_judged_on_the_measured_latency(bound, meets):
    scheduler, _ = run(HalfLevels(), f"latency_ms <= {bound:g}", 1, target="filters")
    result = scheduler.results[0]
    timing = result.measured.counts["latency"]
    assert result.measured.latency_ms == timing["median_ms"] > 0
    assert (timing["batch_size"], timing["device"]) == (1, "cpu")  # recorded with the figure
    assert result.meets_budget is meets
    # the levels asked for, on the dense model's 10 filters per layer
    assert result.levels == {"conv1.weight": 0.5, "conv2.weight": 0.5}


def test_metrics_that_learn_from_training_passes_are_refused():
    with pytest.raises(IterativePruningError, match="taylor") as info:
        run(HalfLevels(), "macs <= 0.5", 1, target="filters", pruner_metric="taylor")
    assert "l1" in info.value.hint


def test_taylor_metric_ranks_filters_by_the_calibration_batches_gradients():
    torch.manual_seed(0)
    model = TwoConv()
    images, labels = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))

    def loss(m):
        return torch.nn.functional.cross_entropy(m.eval()(images), labels)

    def calibrate(m, after_backward):
        m.zero_grad()
        loss(m).backward()
        after_backward()

    # the oracle: first-order Taylor importance sum |w * dL/dw| per conv1 filter, by hand
    reference = copy.deepcopy(model)
    loss(reference).backward()
    importance = (reference.conv1.weight * reference.conv1.weight.grad).abs().sum(dim=(1, 2, 3))
    expected = set(importance.argsort()[:5].tolist())
    by_magnitude = set(model.conv1.weight.abs().sum(dim=(1, 2, 3)).argsort()[:5].tolist())
    assert expected != by_magnitude  # so the test tells the gradients were used

    scheduler = PruningScheduler(
        LevelPruner("filters", "taylor", calibrate=calibrate),
        HalfLevels(),
        speedup=False,
        model=model,
        example_input=EXAMPLE,
        budget="macs <= 0.9",
    )
    scheduler.compress()
    pruned = scheduler.previous.model.conv1.weight
    zero = {i for i in range(10) if bool((pruned[i] == 0).all())}
    assert zero == expected
