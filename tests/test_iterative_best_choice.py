"""Which result becomes the best one: fine-tuned results before unfine-tuned probes, and a result
just over a latency budget timed again before it is judged. Latency is scripted (a fake
``measure_latency``), so nothing here depends on the machine's speed."""

from __future__ import annotations

import pytest
import torch

from prunecli.iterative import LevelPruner, PruningScheduler
from prunecli.iterative.measure import LATENCY_RECHECK_FACTOR, LATENCY_RECHECK_MARGIN, LatencyOptions
from prunecli.iterative.store import iteration_row
from prunecli.iterative.task import Task, TaskGenerator
from prunecli.report import latency as timing
from prunecli.report.render import iteration_cells
from tests.support.iterative import EXAMPLE, TwoConv


class FixedTasks(TaskGenerator):
    """All tasks up front, each from the dense model: ``(level, finetune)`` pairs, every prunable
    tensor at ``level``."""

    def __init__(self, plan: list[tuple[float, bool]]) -> None:
        self.plan = plan

    def initial_tasks(self, space):
        return [
            Task(index=i, levels=dict.fromkeys(space.shares, level), start_from="dense", finetune=finetune)
            for i, (level, finetune) in enumerate(self.plan)
        ]

    def next_tasks(self, result):
        return []


class ScriptedTiming:
    """Stands in for ``measure_latency``: returns the listed medians in order, records the runs."""

    def __init__(self, medians: list[float]) -> None:
        self.medians = list(medians)
        self.runs: list[int] = []

    def __call__(self, model, sample_shape, *, batch_size, runs, warmup, threads, device):
        self.runs.append(runs)
        median = self.medians.pop(0)
        return timing.LatencyResult(median, median, median, runs, warmup, batch_size, threads, device)


def schedule(
    plan, scores, budget, monkeypatch=None, medians=None
) -> tuple[PruningScheduler, ScriptedTiming | None]:
    """Run ``plan`` with scores returned in order by the evaluator (and latencies by ``medians``,
    the first one the dense model's)."""
    fake = None
    if medians is not None:
        fake = ScriptedTiming(medians)
        monkeypatch.setattr(timing, "measure_latency", fake)
    queue = list(scores)
    torch.manual_seed(0)
    scheduler = PruningScheduler(
        LevelPruner("element", "l1"),
        FixedTasks(plan),
        finetuner=lambda model: None,
        evaluator=lambda model: queue.pop(0),
        model=TwoConv(),
        example_input=EXAMPLE,
        budget=budget,
        latency=LatencyOptions(runs=4) if medians is not None else None,
    )
    scheduler.compress()
    if fake is not None:
        assert fake.medians == [], "every scripted measurement is used"
    return scheduler, fake


# ------------------------------------------------------------------ fine-tuned before probes
@pytest.mark.parametrize("order", ["probe first", "probe last"])
def test_a_better_scoring_probe_does_not_beat_a_finetuned_result_meeting_the_budget(order):
    plan, scores = [(0.5, False), (0.5, True)], [0.99, 0.60]
    if order == "probe last":
        plan, scores = plan[::-1], scores[::-1]
    scheduler, _ = schedule(plan, scores, "weights <= 0.6")
    assert all(r.meets_budget for r in scheduler.results)
    best = scheduler.get_best_result()
    assert best.result.task.finetune is True
    assert best.score == 0.60
    assert scheduler.probe_warning() is None


def test_among_finetuned_results_the_best_score_wins():
    scheduler, _ = schedule([(0.5, True), (0.5, False), (0.5, True)], [0.7, 0.95, 0.8], "weights <= 0.6")
    assert scheduler.get_best_result().task_id == 2


def test_a_probe_is_best_only_when_no_finetuned_result_meets_the_budget():
    # level 0.1 keeps 90 % of the weights: over the budget; the probe at level 0.5 meets it
    scheduler, _ = schedule([(0.5, False), (0.1, True)], [0.6, 0.99], "weights <= 0.6")
    assert [r.meets_budget for r in scheduler.results] == [True, False]
    best = scheduler.get_best_result()
    assert best.task_id == 0 and best.result.task.finetune is False
    warning = scheduler.probe_warning()
    assert warning is not None and "iteration 0" in warning and "unfine-tuned probe" in warning


def test_the_iteration_table_marks_probes():
    scheduler, _ = schedule([(0.5, False), (0.5, True)], [0.5, 0.6], "weights <= 0.6")
    rows = [iteration_row(n, r) for n, r in enumerate(scheduler.results)]
    assert [row["finetuned"] for row in rows] == [False, True]
    budget_cells = [cells[7] for cells in iteration_cells({"iterative": {"iterations": rows}})]
    assert budget_cells == ["meets, probe", "meets"]


# ------------------------------------------------------------------ latency re-measured near the bound
def test_a_borderline_latency_miss_is_measured_again_and_becomes_best(monkeypatch):
    # dense 20 ms; the probe 5 ms; the fine-tuned result first 10.8 ms (over 10 by 8 %), then 9.6 ms
    scheduler, fake = schedule(
        [(0.5, False), (0.5, True)], [0.99, 0.9], "latency_ms <= 10", monkeypatch, [20.0, 5.0, 10.8, 9.6]
    )
    final = scheduler.results[1]
    assert final.meets_budget is True
    assert final.measured.latency_ms == 9.6  # the smaller of the two medians
    assert final.metrics["latency_ms_first"] == 10.8 and final.metrics["latency_ms_recheck"] == 9.6
    assert final.measured.counts["latency"]["median_ms"] == 10.8
    assert final.measured.counts["latency_recheck"]["median_ms"] == 9.6
    # only the borderline result was timed again, with more runs
    assert fake.runs == [4, 4, 4, 4 * LATENCY_RECHECK_FACTOR]
    assert "latency_ms_first" not in scheduler.results[0].metrics
    assert scheduler.get_best_result().task_id == 1
    assert scheduler.probe_warning() is None


def test_a_recheck_that_misses_again_keeps_the_result_over_the_budget(monkeypatch):
    scheduler, _ = schedule(
        [(0.5, False), (0.5, True)], [0.6, 0.9], "latency_ms <= 10", monkeypatch, [20.0, 5.0, 10.8, 10.4]
    )
    final = scheduler.results[1]
    assert final.meets_budget is False
    assert final.measured.latency_ms == 10.4
    best = scheduler.get_best_result()
    assert best.task_id == 0
    assert "iteration 0" in scheduler.probe_warning()


def test_a_miss_beyond_the_margin_is_not_measured_again(monkeypatch):
    over = 10 * (1 + LATENCY_RECHECK_MARGIN) + 0.01
    scheduler, fake = schedule([(0.5, True)], [0.9], "latency_ms <= 10", monkeypatch, [20.0, over])
    result = scheduler.results[0]
    assert result.meets_budget is False and result.measured.latency_ms == over
    assert "latency_ms_first" not in result.metrics
    assert fake.runs == [4, 4]
    assert scheduler.get_best_result() is None
