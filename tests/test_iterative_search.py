"""Search generators on synthetic results: budgets met, NNI's rules followed, resumable."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from prunecli.errors import ConfigError
from prunecli.iterative.cost import (
    BudgetUnreachable,
    LayerCost,
    LayerInfo,
    ShareCost,
    scale_to_budget,
)
from prunecli.iterative.generators.amc import AMC, load_network_list
from prunecli.iterative.generators.annealing import SimulatedAnnealing
from prunecli.iterative.generators.autocompress import AutoCompress
from prunecli.iterative.generators.netadapt import NetAdapt
from prunecli.iterative.generators.search import rng_from_state
from tests.support.search import SHARES, drive, quadratic_score, result_for, space

AMC_DIR = Path(__file__).resolve().parents[2] / "shared" / "distiller-examples" / "auto_compression" / "amc"


def share_cost(levels):
    """The budget as the search space states it: 1 - sum(share * level)."""
    return 1.0 - sum(SHARES[n] * v for n, v in levels.items())


def generators():
    return {
        "sa": lambda: SimulatedAnnealing(seed=3),
        "netadapt": lambda: NetAdapt(step=0.1),
        "autocompress": lambda: AutoCompress(rounds=2, seed=4),
        "amc": lambda: AMC(episodes=6, warmup=2, hidden=16, seed=5),
    }


@pytest.mark.parametrize("kind", ["sa", "netadapt", "autocompress", "amc"])
def test_final_allocation_meets_the_share_budget(kind):
    tasks = drive(generators()[kind](), space(0.25))
    final = tasks[-1]
    assert final.finetune
    assert share_cost(final.levels) <= 0.25 + 1e-9
    assert all(0.0 <= v <= 0.9 + 1e-12 for t in tasks for v in t.levels.values())


@pytest.mark.parametrize("kind", ["sa", "amc"])
def test_every_probe_meets_the_budget(kind):
    tasks = drive(generators()[kind](), space(0.4))
    assert len(tasks) > 3
    for task in tasks:
        assert share_cost(task.levels) <= 0.4 + 1e-9, task.note


def test_scale_to_budget_refuses_an_unreachable_budget_with_the_smallest_value():
    with pytest.raises(BudgetUnreachable) as caught:
        scale_to_budget({n: 1.0 for n in SHARES}, ShareCost(SHARES), 0.05, 0.9)
    assert caught.value.smallest == pytest.approx(0.1)  # 1 - 0.9 * (sum of shares = 1)


# ------------------------------------------------------------------------------- simulated annealing
@pytest.mark.parametrize("seed", range(8))
def test_annealing_acceptance_follows_the_metropolis_formula(seed):
    gen = SimulatedAnnealing(start_temperature=0.5, stop_temperature=0.01, cool_down_rate=0.9, seed=seed)
    first = gen.initial_tasks(space(0.5))[0]
    second = gen.next_tasks(result_for(first, 0.9))[0]  # the first proposal is always accepted
    assert gen.annealer.current == first.levels
    temperature = gen.annealer.temperature
    replay = rng_from_state(gen.state_dict()["rng"])
    worse = 0.5
    expected = replay.uniform(0.0, 1.0) < math.exp(-(0.9 - worse) / temperature)
    gen.next_tasks(result_for(second, worse))
    accepted = gen.annealer.history[-1][1]
    assert accepted == expected
    assert gen.annealer.current == (second.levels if expected else first.levels)
    assert gen.annealer.temperature == pytest.approx(temperature * 0.9)


def test_annealing_acceptance_takes_both_branches_over_seeds():
    outcomes = set()
    for seed in range(8):
        gen = SimulatedAnnealing(start_temperature=0.5, stop_temperature=0.01, seed=seed)
        first = gen.initial_tasks(space(0.5))[0]
        second = gen.next_tasks(result_for(first, 0.9))[0]
        gen.next_tasks(result_for(second, 0.5))
        outcomes.add(gen.annealer.history[-1][1])
    assert outcomes == {True, False}


def test_annealing_stops_when_the_temperature_falls_below_the_stop():
    gen = SimulatedAnnealing(start_temperature=100, stop_temperature=20, cool_down_rate=0.9, seed=0)
    tasks = drive(gen, space(0.3))
    probes = [t for t in tasks if t.extra["role"] == "probe"]
    # 100 * 0.9**k >= 20 for k <= 15: sixteen probes are judged, then the best is fine-tuned
    assert len(probes) == 1 + max(k for k in range(100) if 100 * 0.9**k >= 20)
    assert tasks[-1].levels == gen.annealer.best


def test_annealing_gives_larger_tensors_higher_levels_like_nni():
    task = SimulatedAnnealing(seed=1).initial_tasks(space(0.5))[0]
    by_share = sorted(SHARES, key=SHARES.get)
    levels = [task.levels[n] for n in by_share]
    assert levels == sorted(levels)


# ------------------------------------------------------------------------------- NetAdapt
def test_netadapt_candidates_each_prune_one_tensor_to_the_iteration_target():
    gen = NetAdapt(step=0.1)
    candidates = gen.initial_tasks(space(0.25))
    assert {t.extra["tensor"] for t in candidates} == set(SHARES)
    for task in candidates:
        moved = [n for n, v in task.levels.items() if v > 0]
        assert moved == [task.extra["tensor"]]
        if task.extra["tensor"] == "a.weight":  # 0.1 of the cost: at max_level it removes only 0.09
            assert task.levels["a.weight"] == pytest.approx(0.9)
        else:
            assert share_cost(task.levels) == pytest.approx(0.9, abs=1e-6)  # dense 1.0 minus one step


def test_netadapt_keeps_the_best_scoring_candidate():
    gen = NetAdapt(step=0.1)
    candidates = list(gen.initial_tasks(space(0.25)))
    scores = {"a.weight": 0.2, "b.weight": 0.7, "c.weight": 0.9, "d.weight": 0.4}
    follow = []
    for task in candidates:
        follow.extend(gen.next_tasks(result_for(task, scores[task.extra["tensor"]])))
    winner = next(t for t in candidates if t.extra["tensor"] == "c.weight")
    assert gen.accepted == winner.levels
    assert follow and all(t.levels["c.weight"] >= winner.levels["c.weight"] for t in follow)
    assert all(
        share_cost(t.levels) == pytest.approx(0.8, abs=1e-6)
        for t in follow
        if t.extra["tensor"] != "a.weight"
    )


# ------------------------------------------------------------------------------- AutoCompress
def test_autocompress_rounds_follow_the_geometric_targets_and_never_undo_a_round():
    gen = AutoCompress(rounds=3, start_temperature=10, stop_temperature=5, seed=2)
    tasks = drive(gen, space(0.25))
    admm = [t for t in tasks if t.extra.get("role") == "admm"]
    assert [t.extra["round"] for t in admm] == [1, 2, 3]
    assert all(t.extra["pruner"] == "admm" for t in admm)
    for r, task in enumerate(admm, start=1):
        assert share_cost(task.levels) <= 0.25 ** (r / 3) + 1e-9
    for earlier, later in zip(admm, admm[1:]):
        probes = [t for t in tasks if t.extra.get("round") == later.extra["round"]]
        for probe in probes:
            assert all(probe.levels[n] >= earlier.levels[n] - 1e-12 for n in SHARES)


# ------------------------------------------------------------------------------- AMC
def chain_layers() -> list[LayerInfo]:
    """conv a -> conv b -> conv c -> linear d: each layer's inputs come from the previous one."""
    return [
        LayerInfo("a.weight", "conv", 3, 16, 9, macs=1000.0, params=432, ifm_hw=(8, 8)),
        LayerInfo(
            "b.weight", "conv", 16, 32, 9, macs=4000.0, params=4608, ifm_hw=(8, 8), producers=["a.weight"]
        ),
        LayerInfo(
            "c.weight", "conv", 32, 32, 9, macs=4000.0, params=9216, ifm_hw=(4, 4), producers=["b.weight"]
        ),
        LayerInfo("d.weight", "linear", 32, 10, macs=320.0, params=320, producers=["c.weight"]),
    ]


def test_layer_cost_counts_inputs_removed_by_the_producer():
    cost = LayerCost(chain_layers(), "macs")
    levels = {"a.weight": 0.5, "b.weight": 0.5}
    # a keeps half its outputs; b keeps half its outputs of half its inputs; c half its inputs
    expected = (1000 * 0.5 + 4000 * 0.25 + 4000 * 0.5 + 320) / 9320
    assert cost.predict(levels) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(3))
def test_amc_clips_actions_so_every_episode_meets_a_layer_cost_budget(seed):
    layers = chain_layers()
    cost = LayerCost(layers, "macs")
    searched = {n: s for n, s in cost.shares(["a.weight", "b.weight", "c.weight"]).items()}
    search_space = space(0.3)
    search_space.shares = searched
    gen = AMC(episodes=5, warmup=2, hidden=16, seed=seed).bind(cost=cost, layers=layers)
    tasks = drive(gen, search_space)
    assert len(tasks) == 6
    for task in tasks:
        assert cost.predict(task.levels) <= 0.3 + 1e-9


def test_amc_clip_raises_an_action_to_the_smallest_feasible_level():
    gen = AMC(episodes=2, warmup=1, hidden=8, seed=0)
    gen.initial_tasks(space(0.25))
    order = gen.order  # a, b, c, d
    # with a at 0 and c, d at 0.9, b must remove (1 - 0.25 - 0.9 * 0.6) / 0.3 = 0.7
    clipped = gen.clip_action(1, 0.0, {order[0]: 0.0})
    assert clipped == pytest.approx(0.7, abs=1e-6)
    assert gen.clip_action(1, 0.8, {order[0]: 0.0}) == pytest.approx(0.8)
    assert gen.clip_action(1, 2.0, {order[0]: 0.0}) == pytest.approx(0.9)


def test_amc_reads_distiller_network_lists():
    path = AMC_DIR / "auto_compression_channels.yaml"
    assert load_network_list(path, "simplenet_mnist") == ["conv2.weight"]
    plain20 = load_network_list(path, "plain20_cifar")
    assert plain20[0] == "layer1.0.conv1.weight" and plain20[-1] == "fc.weight" and len(plain20) == 19


def test_amc_network_list_errors_name_the_file_and_the_fix(tmp_path):
    path = AMC_DIR / "auto_compression_channels.yaml"
    with pytest.raises(ConfigError) as caught:
        load_network_list(path, "no_such_net")
    assert caught.value.location.file.endswith("auto_compression_channels.yaml")
    assert "simplenet_mnist" in caught.value.hint
    listed = tmp_path / "net.yaml"
    listed.write_text('network:\n  tiny:\n    ["module.conv1", "module.nope"]\n')
    with pytest.raises(ConfigError) as caught:
        load_network_list(listed, "tiny", ["conv1.weight", "fc.weight"])
    assert "module.nope" in caught.value.message and caught.value.location.line == 3


# ------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("kind", ["sa", "netadapt", "autocompress", "amc"])
def test_state_dict_round_trip_gives_identical_next_proposals(kind):
    make = generators()[kind]
    original = make()
    queue = list(original.initial_tasks(space(0.3)))
    for _ in range(5):  # run a few tasks, then "kill" and resume from the saved state
        task = queue.pop(0)
        queue.extend(original.next_tasks(result_for(task, quadratic_score(task.levels))))
    state = json.loads(json.dumps(original.state_dict()))
    resumed = make()
    resumed.load_state_dict(state)
    for _ in range(6):
        if not queue:
            break
        task = queue.pop(0)
        score = quadratic_score(task.levels)
        one = original.next_tasks(result_for(task, score))
        two = resumed.next_tasks(result_for(task, score))
        assert [(t.index, t.levels, t.finetune, t.extra) for t in one] == [
            (t.index, t.levels, t.finetune, t.extra) for t in two
        ]
        queue.extend(one)


def test_same_seed_same_search_other_seed_other_search():
    def levels(seed):
        return [t.levels for t in drive(SimulatedAnnealing(seed=seed), space(0.3))]

    assert levels(7) == levels(7)
    assert levels(7) != levels(8)
    assert np.isfinite([v for lv in levels(7) for v in lv.values()]).all()
