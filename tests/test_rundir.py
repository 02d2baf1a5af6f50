"""RunDir: the one owner of a run directory's file names and its metrics.jsonl format."""

from __future__ import annotations

import json

import pytest

from prunecli.errors import ConfigError, PruneCliError
from prunecli.rundir import CHECKPOINTS, RunDir


def test_files_have_the_documented_names(tmp_path):
    run = RunDir(tmp_path)
    named = {
        run.checkpoint: "checkpoint.pt",
        run.best: "best.pt",
        run.compact: "compact.pt",
        run.metrics: "metrics.jsonl",
        run.log: "run.log",
        run.config: "config.yaml",
        run.schedule: "schedule.yaml",
        run.report: "report.json",
    }
    for path, name in named.items():
        assert path == tmp_path / name
    assert CHECKPOINTS == ("compact.pt", "checkpoint.pt", "best.pt")


def test_metrics_written_appended_and_read_back(tmp_path):
    run = RunDir(tmp_path)
    assert run.read_metrics() == []
    rows = [{"epoch": 0, "top1": 0.5}, {"epoch": 1, "top1": 0.75}]
    run.write_metrics(rows[:1])
    run.append_metrics(rows[1])
    assert run.read_metrics() == rows
    lines = run.metrics.read_text().splitlines()
    assert [json.loads(line) for line in lines] == rows  # one JSON object per line
    run.write_metrics([])  # a resume rewrites the file
    assert run.read_metrics() == []


def test_broken_metrics_line_is_located(tmp_path):
    run = RunDir(tmp_path)
    run.metrics.write_text('{"epoch": 0}\n\n{"epoch": 1,\n')
    with pytest.raises(PruneCliError) as info:
        run.read_metrics()
    assert info.value.location.file == str(run.metrics)
    assert info.value.location.line == 3


def test_present_checkpoints_in_report_order(tmp_path):
    run = RunDir(tmp_path)
    assert run.present_checkpoints() == []
    run.checkpoint.write_bytes(b"a")
    run.write_text(run.compact, "b")
    assert run.present_checkpoints() == [run.compact, run.checkpoint]


def test_mark_best_keeps_its_bytes_when_checkpoint_is_replaced(tmp_path):
    run = RunDir(tmp_path)
    run.write_text(run.checkpoint, "epoch 1")
    run.mark_best()
    run.write_text(run.checkpoint, "epoch 2")  # atomic replace, as every save does
    assert run.best.read_text() == "epoch 1"
    assert run.checkpoint.read_text() == "epoch 2"


def test_create_refuses_a_non_empty_out_dir_and_names_the_resume(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "checkpoint.pt").write_bytes(b"x")
    with pytest.raises(ConfigError) as info:
        RunDir.create(tmp_path / "old", tmp_path / "runs", "x")
    assert "--resume" in info.value.hint
    first = RunDir.create(None, tmp_path / "runs", "quick")
    second = RunDir.create(None, tmp_path / "runs", "quick")
    assert first.path != second.path and first.path.is_dir() and second.path.is_dir()
    assert first.path.name.startswith("quick-")
