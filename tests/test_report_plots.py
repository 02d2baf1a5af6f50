"""Schedule plots: plot_plan on real Distiller schedules, AGP curves against the published formula."""

from __future__ import annotations

from pathlib import Path

import pytest

import prunecli.schedule as schedule
import prunecli.schedule.timeline as timeline
from prunecli.report.plots import plot_plan  # noqa: E402
from prunecli.schedule.timeline import agp_curves  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _load(examples_dir: str, rel: str):
    return schedule.load_schedule(Path(examples_dir) / rel)


def test_agp_curves_of_resnet20_hybrid_schedule(examples_dir):
    sched = _load(examples_dir, "agp-pruning/resnet20_filters.schedule_agp.yaml")
    curves = {c["pruner"]: c for c in agp_curves(sched)}
    assert set(curves) == {"low_pruner", "fine_pruner", "fc_pruner"}
    low = curves["low_pruner"]
    assert low["epochs"] == list(range(0, 30, 2)) and low["group_type"] == "Filters"
    # notes b.1: span 28; epoch 0 -> 0.10, epoch 14 -> 0.5 - 0.4 * 0.5**3 = 0.45, epoch 28 -> 0.50
    assert low["targets"][0] == pytest.approx(0.10)
    assert low["targets"][7] == pytest.approx(0.45)
    assert low["targets"][-1] == pytest.approx(0.50)
    assert curves["fine_pruner"]["targets"][-1] == pytest.approx(0.70)


def test_plot_plan_writes_png(examples_dir, tmp_path):
    sched = _load(examples_dir, "agp-pruning/resnet20_filters.schedule_agp.yaml")
    out = tmp_path / "plan.png"
    plot_plan(timeline.plan(sched, 60), out)
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000


def test_plot_plan_without_pruner_targets(examples_dir, tmp_path):
    """An LR-only schedule has no targets: only the timeline panel is drawn."""
    sched = _load(examples_dir, "ssl/resnet20_cifar_baseline_training.yaml")
    out = tmp_path / "lr.png"
    plot_plan(timeline.plan(sched, 50), out)
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_plot_plan_empty(tmp_path):
    out = tmp_path / "empty.png"
    plot_plan([], out)
    assert out.read_bytes().startswith(PNG_MAGIC)
