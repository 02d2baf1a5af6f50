"""The report's deployment latency table: BatchNorm folded, and ONNX Runtime when the extra is installed."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import torch
from torch import nn

from prunecli.report.build import ReportInputs, ReportOptions, assemble_report
from prunecli.report.deploy_latency import onnxruntime_available
from prunecli.report.render import to_markdown

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "docs" / "report-schema.json").read_text())


def _net(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Linear(4, 3),
    )


def _report() -> dict:
    torch.manual_seed(0)
    inputs = ReportInputs(
        model=_net(4), dense=_net(8), input_shape=(1, 8, 8), payload={}, source_kind="inputs"
    )
    return assemble_report(inputs, ReportOptions(latency=True, latency_runs=2, latency_warmup=0))


def test_latency_table_rows_follow_the_schema_and_count_the_folded_batchnorms():
    report = _report()
    jsonschema.validate(json.loads(json.dumps(report)), SCHEMA)
    rows = report["latency_table"]
    assert [(r["runtime"], r["batchnorm"]) for r in rows] == [
        ("pytorch", "as trained"),
        ("pytorch", "folded"),
        ("onnxruntime", "folded"),
    ]
    assert rows[1]["folded_batchnorms"] == {"dense": 2, "compressed": 2}
    measured = rows if onnxruntime_available() else rows[:2]
    for r in measured:
        assert r["dense_ms"] > 0 and r["compressed_ms"] > 0
        assert r["speedup"] == pytest.approx(r["dense_ms"] / r["compressed_ms"])
    assert "## Latency as deployed (CPU)" in to_markdown(report)


def test_without_the_extra_the_onnx_row_says_how_to_install_it(monkeypatch):
    import prunecli.report.deploy_latency as deploy

    monkeypatch.setattr(deploy, "onnxruntime_available", lambda: False)
    last = _report()["latency_table"][-1]
    assert last["runtime"] == "onnxruntime" and last["dense_ms"] is None
    assert 'pip install -e ".[export]"' in last["note"]


def test_no_table_when_latency_is_off():
    torch.manual_seed(0)
    inputs = ReportInputs(
        model=_net(4), dense=_net(8), input_shape=(1, 8, 8), payload={}, source_kind="inputs"
    )
    assert assemble_report(inputs, ReportOptions(latency=False))["latency_table"] is None
