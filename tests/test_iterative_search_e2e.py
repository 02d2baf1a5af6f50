"""Each search generator through the iterative loop on a two-convolution model.

The evaluator is a deterministic function of the weights, the fine-tuner only counts its calls:
what is checked is the loop's measured outcome (MACs after thinning, latency table on disk), not
accuracy.
"""

from __future__ import annotations

import json

import pytest
import torch

from prunecli import LevelPruner, PruningScheduler, build_generator
from prunecli.errors import ConfigError
from prunecli.iterative.latency_table import LatencyTable
from prunecli.rundir import RunDir
from tests.support.iterative import EXAMPLE, TwoConv

pytestmark = pytest.mark.slow


def weight_mass(model: torch.nn.Module) -> float:
    with torch.no_grad():
        return float(sum(p.abs().sum() for p in model.parameters()))


def run(name: str, options: dict, budget: str = "macs <= 0.3", **kwargs):
    torch.manual_seed(0)
    calls: list[int] = []
    scheduler = PruningScheduler(
        LevelPruner(target="filters", metric="l1"),
        build_generator(name, options),
        finetuner=lambda model: calls.append(1),
        evaluator=weight_mass,
        model=TwoConv(),
        example_input=EXAMPLE,
        budget=budget,
        **kwargs,
    )
    scheduler.compress()
    return scheduler, calls


SEARCHES = {
    "simulated_annealing": {"start_temperature": 1.0, "stop_temperature": 0.5, "seed": 1},
    "netadapt": {"step": 0.3, "short_term_epochs": 0},
    "autocompress": {"rounds": 2, "start_temperature": 1.0, "stop_temperature": 0.6, "admm_iterations": 2},
    "amc": {"episodes": 4, "warmup": 2, "hidden": 8, "seed": 2},
}


@pytest.mark.parametrize("name", list(SEARCHES))
def test_search_meets_the_measured_mac_budget(name):
    scheduler, _ = run(name, SEARCHES[name])
    final = scheduler.results[-1]
    assert final.task.finetune and final.meets_budget
    assert final.measured.macs <= 0.3
    best = scheduler.get_best_result()
    assert best is not None
    # the layer cost model predicts what the loop measured after thinning
    assert final.metrics["predicted_macs"] == pytest.approx(final.measured.macs, rel=1e-6)


def test_autocompress_runs_admm_rounds_before_each_rounds_pruning():
    scheduler, calls = run("autocompress", SEARCHES["autocompress"])
    admm = [r for r in scheduler.results if r.task.extra.get("role") == "admm"]
    assert len(admm) == 2
    # per round: two ADMM fine-tunings, then the fine-tuning after pruning; probes are not fine-tuned
    assert len(calls) == 2 * (2 + 1)


def test_amc_searches_only_the_layers_of_a_network_list(tmp_path):
    listed = tmp_path / "amc.yaml"
    listed.write_text('network:\n  two_conv:\n    ["module.conv2"]\n')
    options = {**SEARCHES["amc"], "network": str(listed), "arch": "two_conv"}
    scheduler, _ = run("amc", options, budget="macs <= 0.6")
    assert all(r.task.levels.keys() == {"conv2.weight"} for r in scheduler.results)
    assert scheduler.results[-1].levels["conv1.weight"] == 0.0
    assert scheduler.results[-1].meets_budget


def test_latency_budget_uses_the_cached_table(tmp_path):
    run_dir = RunDir(tmp_path)
    scheduler, _ = run(
        "simulated_annealing", SEARCHES["simulated_annealing"], budget="latency_ms <= 1000",
        latency_table=run_dir.latency_table,
    )  # fmt: skip
    table = LatencyTable.load(run_dir.latency_table)
    assert table is not None and table.batch_size == 1 and table.device == "cpu"
    first = json.loads(run_dir.latency_table.read_text())
    final = scheduler.results[-1]
    assert final.measured.latency_ms is not None
    assert "predicted_latency_ms" in final.metrics and "latency_ms_prediction_error" in final.metrics
    # a second run over the same directory measures nothing again: the file is left as it was
    before = run_dir.latency_table.stat().st_mtime_ns
    run(
        "simulated_annealing",
        SEARCHES["simulated_annealing"],
        budget="latency_ms <= 1000",
        latency_table=run_dir.latency_table,
    )
    assert run_dir.latency_table.stat().st_mtime_ns == before
    assert json.loads(run_dir.latency_table.read_text()) == first


def test_latency_budget_below_the_reachable_is_refused_before_training(tmp_path):
    with pytest.raises(ConfigError) as caught:
        run("simulated_annealing", SEARCHES["simulated_annealing"], budget="latency_ms <= 0.000001")
    assert "cannot be met" in caught.value.message and "latency_ms <=" in caught.value.hint


def test_latency_budget_with_unstructured_pruning_is_refused():
    with pytest.raises(ConfigError) as caught:
        PruningScheduler(
            LevelPruner(target="element", metric="l1"),
            build_generator("simulated_annealing"),
            model=TwoConv(),
            example_input=EXAMPLE,
            budget="latency_ms <= 1.0",
        )
    assert "whole filters or channels" in caught.value.message


def test_a_run_checks_a_latency_budget_on_the_untrained_model_before_training():
    from prunecli.iterative.check import check_on_model
    from prunecli.iterative.measure import LatencyOptions
    from prunecli.iterative.spec import IterativeSpec

    spec = IterativeSpec(
        generator="simulated_annealing",
        budget="latency_ms <= 0.000001",
        pruner={"target": "coupled", "metric": "l1"},
    )
    with pytest.raises(ConfigError) as caught:
        check_on_model(spec, TwoConv(), EXAMPLE, latency=LatencyOptions(runs=2, warmup=1))
    assert "cannot be met" in caught.value.message
    # without latency options (prunecli validate) nothing is timed and nothing is refused
    assert check_on_model(spec, TwoConv(), EXAMPLE) is None
