"""The per-layer latency table: predictions are sums of its entries, and the cache is reused.

A fake timer stands in for the clock (no test may depend on timing): it returns a value computed
from the timed layer's shape and counts its calls.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from prunecli.iterative.cost import describe_layers, scale_to_budget
from prunecli.iterative.latency_table import (
    REST,
    LatencyCost,
    grid_counts,
    layer_key,
    load_or_measure,
    snap,
)
from prunecli.rundir import RunDir


class Chain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 8 * 8, 10)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.flatten(1))


class CountingTimer:
    """A deterministic 'latency': parameters / 1000 ms for a layer, 50 ms for the whole model."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, module: nn.Module, shape) -> float:
        self.calls += 1
        if isinstance(module, Chain):
            return 50.0
        return sum(p.numel() for p in module.parameters()) / 1000.0


@pytest.fixture()
def chain():
    model = Chain()
    layers = describe_layers(model, torch.zeros(1, 1, 8, 8))
    return model, layers


def test_grid_and_snapping_by_hand():
    assert grid_counts(32) == [4, 8, 12, 16, 20, 24, 28, 32]
    assert snap(32, 0.3) == 12  # keeps ceil(9.6) = 10 channels: the grid point above is 12
    assert snap(32, 1.0) == 32 and snap(32, 0.01) == 4


def test_layers_know_who_feeds_their_inputs(chain):
    _, layers = chain
    by_name = {la.weight: la for la in layers}
    assert by_name["conv2.weight"].producers == ["conv1.weight"]
    assert by_name["fc.weight"].producers == ["conv2.weight"]
    assert by_name["fc.weight"].in_channels == 2048 and by_name["conv1.weight"].producers == []


def test_prediction_is_the_sum_of_the_table_entries(chain, tmp_path):
    model, layers = chain
    searched = ["conv1.weight", "conv2.weight"]
    table = load_or_measure(tmp_path / "t.json", layers, searched, model, (1, 8, 8), timer=CountingTimer())
    cost = LatencyCost(table, layers)
    levels = {"conv1.weight": 0.5, "conv2.weight": 0.3}
    # conv1 keeps 8 of 16 filters; conv2 reads 8 channels and keeps ceil(22.4) = 23 -> grid 24 of 32;
    # fc reads 24/32 of 2048 features -> 1536
    keys = [
        layer_key(layers[0], 1, 8),
        layer_key(layers[1], 8, 24),
        layer_key(layers[2], 1536, 10),
    ]
    assert cost.keys(levels) == [*keys, REST]
    expected = 0.0
    for key in [*keys, REST]:
        expected += table.entries[key]
    assert cost.predict(levels) == expected
    # and the entries are what the timer said: the proxy conv 8 -> 24 (3x3, no bias) has 1728 weights
    assert table.entries[keys[1]] == pytest.approx(1.728)
    dense_layers = sum(table.entries[layer_key(la, la.in_channels, la.out_channels)] for la in layers)
    assert table.entries[REST] == pytest.approx(50.0 - dense_layers)
    assert cost.dense == pytest.approx(50.0)


def test_the_table_is_cached_in_the_run_directory_and_reused(chain, tmp_path):
    model, layers = chain
    run = RunDir(tmp_path)
    first = CountingTimer()
    table = load_or_measure(run.latency_table, layers, ["conv2.weight"], model, (1, 8, 8), timer=first)
    assert run.latency_table.is_file()
    # one timing per entry, and the dense model three times for the rest entry (the fastest counts)
    assert first.calls == table.measured_now + 2 == len(table.entries) + 2 > 3
    again = CountingTimer()
    cached = load_or_measure(run.latency_table, layers, ["conv2.weight"], model, (1, 8, 8), timer=again)
    assert again.calls == 0 and cached.measured_now == 0
    assert cached.entries == table.entries
    # searching one more tensor measures only the entries the table lacks
    more = CountingTimer()
    load_or_measure(run.latency_table, layers, ["conv1.weight", "conv2.weight"], model, (1, 8, 8), timer=more)
    assert 0 < more.calls < len(json.loads(run.latency_table.read_text())["entries"])


def test_other_measuring_conditions_are_measured_again(chain, tmp_path):
    model, layers = chain
    path = tmp_path / "t.json"
    load_or_measure(path, layers, ["conv1.weight"], model, (1, 8, 8), threads=1, timer=CountingTimer())
    timer = CountingTimer()
    load_or_measure(path, layers, ["conv1.weight"], model, (1, 8, 8), threads=2, timer=timer)
    assert timer.calls > 0
    assert json.loads(path.read_text())["threads"] == 2


def test_levels_scaled_to_a_latency_budget_meet_it(chain, tmp_path):
    model, layers = chain
    searched = ["conv1.weight", "conv2.weight"]
    table = load_or_measure(None, layers, searched, model, (1, 8, 8), timer=CountingTimer())
    cost = LatencyCost(table, layers)
    budget = 0.6 * cost.dense
    levels = scale_to_budget({n: 1.0 for n in searched}, cost, budget, 0.9)
    assert cost.predict(levels) <= budget
    assert cost.predict({n: v * 0.9 for n, v in levels.items()}) > budget or min(levels.values()) == 0.0
