"""The engine's extension points, through the runnable examples in examples/."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

from prunecli.engine import METRICS, register_metric
from prunecli.engine.registry import RegistryError
from prunecli.errors import ScheduleError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def examples(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    yield lambda name: importlib.import_module(name)
    for name in ("custom_metric", "custom_target", "custom_layer"):
        sys.modules.pop(name, None)


def test_user_metric_function_named_in_the_schedule(examples) -> None:
    model, masks = examples("custom_metric").run()
    spread = model[0].weight.detach().reshape(8, -1).std(dim=1)
    expected = set(torch.argsort(spread)[:4].tolist())
    pruned = set((masks["0.weight"].reshape(8, -1).sum(dim=1) == 0).nonzero().flatten().tolist())
    assert pruned == expected


def test_user_target_named_in_the_schedule(examples) -> None:
    model, masks = examples("custom_target").run()
    pair_l1 = model[0].weight.detach().abs().reshape(4, -1).sum(dim=1)
    low_pairs = set(torch.argsort(pair_l1)[:2].tolist())
    kept_rows = masks["0.weight"][:, 0]
    for pair in range(4):
        assert kept_rows[2 * pair] == kept_rows[2 * pair + 1]  # a pair goes together
        assert bool(kept_rows[2 * pair] == 0) == (pair in low_pairs)


def test_thinning_rule_for_a_custom_layer_from_a_plugin(examples) -> None:
    module = examples("custom_layer")
    model, masks = module.run()
    kept = (masks["0.weight"].reshape(8, -1).sum(dim=1) != 0).sum()
    assert model[0].weight.shape[0] == kept == 4
    assert model[0].scale.numel() == 4 and model[0].out_channels == 4
    assert model[2].weight.shape[1] == 4  # the next convolution lost the matching inputs
    out = model(torch.randn(2, 3, 6, 6))
    assert out.shape == (2, 4, 6, 6)


def test_registered_metric_by_name_and_did_you_mean() -> None:
    register_metric("row_max", lambda rows: rows.abs().amax(dim=1))
    try:
        assert "row_max" in METRICS
        with pytest.raises(RegistryError, match="did you mean 'row_max'"):
            METRICS.get("row_mx")
    finally:
        METRICS.unregister("row_max")


def test_missing_user_module_is_a_located_error() -> None:
    from prunecli.compression import build_scheduler
    from prunecli.schedule import load_schedule

    text = (
        "version: 1\npruners:\n  p:\n    target: filters\n    metric: no_such_module:score\n"
        "    sparsity: 0.5\n    weights: [0.weight]\npolicies:\n  - pruner: {instance_name: p}\n    epochs: [0]\n"
    )
    schedule = load_schedule("user.yaml", text=text)  # nothing imported while reading the file
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    with pytest.raises(ScheduleError) as info:
        build_scheduler(schedule, model, torch.optim.SGD(model.parameters(), lr=0.1))
    (problem,) = info.value.problems
    assert problem.location.line == 5 and "cannot import 'no_such_module'" in problem.message
    assert "PYTHONPATH" in problem.hint
