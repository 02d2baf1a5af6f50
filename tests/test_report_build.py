"""Report assembly, formats and gates on hand-built dense/thinned models (no checkpoint needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import torch
from torch import nn

from prunecli.errors import GateFailed, PruneCliError
from prunecli.report.build import ReportInputs, ReportOptions, assemble_report
from prunecli.report.gates import enforce_gates, evaluate_gates, numeric_fields
from prunecli.report.html import to_html
from prunecli.report.plots import REPORT_PLOTS
from prunecli.report.render import to_json, to_markdown

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "docs" / "report-schema.json").read_text())


class Tiny(nn.Module):
    """conv(1->c1, 3x3, pad 1) -> relu -> conv(c1->4, 3x3, pad 1) -> gap -> linear(4->3), on 1x8x8."""

    def __init__(self, c1: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c1, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(torch.relu(self.conv1(x)))
        return self.fc(x.mean(dim=(2, 3)))


def _macs(c1: int) -> int:
    # Distiller's formula: OFM volume * C_in/groups * kh * kw; linear = in * out.
    return 64 * c1 * 1 * 9 + 64 * 4 * c1 * 9 + 4 * 3


HISTORY = [
    {"epoch": 0, "top1": 0.50, "top5": 0.90, "sparsity": 0.0, "val_loss": 1.2},
    {"epoch": 1, "top1": 0.70, "top5": 0.95, "sparsity": 0.2, "val_loss": 0.9},
    {"epoch": 2, "top1": 0.80, "top5": 0.97, "sparsity": 0.3, "val_loss": 0.7},
]

SCHEDULE = """version: 1
pruners:
  agp:
    class: AutomatedGradualPruner
    initial_sparsity: 0.05
    final_sparsity: 0.50
    weights: [conv2.weight]
policies:
  - pruner:
      instance_name: agp
    starting_epoch: 0
    ending_epoch: 3
    frequency: 1
"""


@pytest.fixture
def inputs() -> ReportInputs:
    torch.manual_seed(0)
    thinned = Tiny(c1=4)  # half of conv1's filters removed
    with torch.no_grad():
        thinned.conv2.weight[:, :, :, :2] = 0  # 2/3 of conv2's columns zeroed, i.e. 6 of 9 per kernel kept
    return ReportInputs(
        model=thinned,
        dense=Tiny(c1=8),
        input_shape=(1, 8, 8),
        payload={"epoch": 1, "model": {"name": "tiny", "kwargs": {}}, "extras": {"baseline_top1": 0.75}},
        source_kind="inputs",
        history=HISTORY,
        schedule_text=SCHEDULE,
    )


@pytest.fixture
def report(inputs) -> dict:
    return assemble_report(
        inputs, ReportOptions(latency=True, deployed_latency=False, latency_runs=2, latency_warmup=1)
    )


def test_headline_counts(report):
    dense, comp = report["headline"]["dense"], report["headline"]["compressed"]
    assert dense["macs"] == _macs(8)
    assert comp["macs"] == _macs(4)
    assert report["macs_ratio"] == pytest.approx(_macs(4) / _macs(8))
    dense_params = 8 * 9 + 4 * 8 * 9 + 4 * 3 + 3
    comp_params = 4 * 9 + 4 * 4 * 9 + 4 * 3 + 3
    assert dense["params"] == dense_params and comp["params"] == comp_params
    assert report["params_ratio"] == pytest.approx(comp_params / dense_params)
    zeros = 4 * 4 * 3 * 2  # conv2 columns 0 and 1 of every kernel
    assert comp["nnz_params"] == comp_params - zeros
    assert report["nnz_params_ratio"] == pytest.approx((comp_params - zeros) / dense_params)
    # effective MACs: conv2 runs at a third of its density.
    conv2 = 64 * 4 * 4 * 9
    assert comp["effective_macs"] == _macs(4) - conv2 + round(conv2 / 3)
    assert comp["latency_ms"] > 0 and dense["latency_ms"] > 0
    assert report["speedup"] == pytest.approx(dense["latency_ms"] / comp["latency_ms"])


def test_accuracy_from_checkpoint_epoch_and_baseline(report):
    assert report["top1"] == 0.70 and report["top5"] == 0.95  # the epoch-1 row, not the last one
    assert report["source"]["accuracy_from"] == "metrics:epoch 1"
    assert report["headline"]["dense"]["top1"] == 0.75
    assert report["top1_delta"] == pytest.approx(0.70 - 0.75)


def test_sparsity_and_compute_tables(report):
    names = [r["name"] for r in report["sparsity_table"]["rows"]]
    assert names == ["conv1.weight", "conv2.weight", "fc.weight"]
    conv2 = report["sparsity_table"]["rows"][1]
    assert conv2["fine_pct"] == pytest.approx(100 * 2 / 3)
    assert conv2["pct_2d"] == 0  # no whole kernel is zero
    total = report["sparsity_table"]["total"]
    assert report["sparsity"] == pytest.approx(1 - total["nnz_sparse"] / total["nnz_dense"])
    by_name = {r["name"]: r for r in report["compute"]}
    assert by_name["conv1"]["dense_macs"] == 64 * 8 * 9 and by_name["conv1"]["macs"] == 64 * 4 * 9


def test_json_matches_schema(report):
    doc = json.loads(to_json(report))
    jsonschema.validate(doc, SCHEMA)
    assert doc["schema_version"] == 1


def test_schema_rejects_a_broken_report(report):
    doc = json.loads(to_json(report))
    del doc["headline"]["compressed"]["macs"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)


def test_agp_curve_from_stored_schedule(report):
    (curve,) = report["schedule"]["agp"]
    assert curve["pruner"] == "agp" and curve["epochs"] == [0, 1, 2]
    # Distiller: span = ((3 - 0 - 1) // 1) * 1 = 2; target = final + (initial - final) * (1 - t/span)^3
    expected = [0.5 + (0.05 - 0.5) * (1 - e / 2) ** 3 for e in (0, 1, 2)]
    assert curve["targets"] == pytest.approx(expected)


def test_markdown_has_every_table(report):
    md = to_markdown(report)
    for heading in ("## Headline", "## Ratios", "## Weights sparsity", "## Compute", "## History"):
        assert heading in md
    assert "| Name | Shape | NNZ (dense) | NNZ (sparse) | Cols (%) | Rows (%) | Ch (%) |" in md
    assert "| Total sparsity: |" in md


def test_html_is_self_contained_with_every_plot(report):
    page = to_html(report)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<link" not in page and "<script" not in page
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert [title for title, _ in images] == list(REPORT_PLOTS)
    assert all(len(data) > 1000 for _, data in images)


# --------------------------------------------------------------------------- gates


def test_numeric_fields_are_dotted_paths(report):
    fields = numeric_fields(report)
    assert fields["macs_ratio"] == report["macs_ratio"]
    assert fields["headline.compressed.macs"] == _macs(4)
    assert "history" not in fields and "sparsity_table.rows" not in fields


def test_gate_pass(report):
    results = evaluate_gates(
        report, ["top1 < 0.5", "macs_ratio > 0.9", "headline.compressed.macs >= 1e9", "top1_delta < -0.5"]
    )
    assert [r.failed for r in results] == [False, False, False, False]
    enforce_gates(results)  # does not raise


def test_gate_fail_reports_actual_value(report):
    results = evaluate_gates(report, ["top1 < 0.90", "macs_ratio <= 0.6"])
    with pytest.raises(GateFailed) as exc:
        enforce_gates(results)
    assert exc.value.exit_code == 1
    text = exc.value.render()
    assert "top1 < 0.9" in text and "actual top1 = 0.7" in text
    assert f"actual macs_ratio = {report['macs_ratio']:.6g}" in text


@pytest.mark.parametrize("gate", ["top1 << 0.9", "top1 < high", "top1 == 0.9", "< 0.9", ""])
def test_malformed_gate(report, gate):
    with pytest.raises(PruneCliError) as exc:
        evaluate_gates(report, [gate])
    assert exc.value.exit_code == 2 and not isinstance(exc.value, GateFailed)


def test_unknown_field_lists_available(report):
    with pytest.raises(PruneCliError) as exc:
        evaluate_gates(report, ["accuracy > 0.5"])
    assert exc.value.exit_code == 2
    assert "macs_ratio" in exc.value.hint and "headline.dense.params" in exc.value.hint


def test_null_field_is_bad_input(inputs):
    inputs.history = []
    report = assemble_report(inputs, ReportOptions(latency=False))
    assert report["top1"] is None and report["speedup"] is None
    with pytest.raises(PruneCliError) as exc:
        evaluate_gates(report, ["top1 < 0.9"])
    assert exc.value.exit_code == 2 and "no value" in exc.value.message


def test_final_test_evaluation_preferred_over_metrics(inputs):
    """A run's final test-split numbers (extras.test) beat the validation metrics row."""
    inputs.payload["extras"]["test"] = {"top1": 0.91, "top5": 0.99, "loss": 0.3, "samples": 100}
    report = assemble_report(inputs, ReportOptions(latency=False))
    assert (report["top1"], report["top5"]) == (0.91, 0.99)
    assert report["source"]["accuracy_from"] == "checkpoint:test"
    assert report["top1_delta"] == pytest.approx(0.91 - 0.75)


def test_layer_reduction_against_dense_tensors(report):
    from prunecli.report.plots import layer_reduction

    got = {name: (thinned, masked) for name, thinned, masked in layer_reduction(report)}
    assert got["conv1.weight"] == pytest.approx((50.0, 0.0))  # 8 -> 4 filters, no zeros
    # conv2: 4x8x3x3 -> 4x4x3x3 (half removed); 96 of the 144 kept weights are zero
    assert got["conv2.weight"] == pytest.approx((50.0, 100 * 96 / 288))
    assert got["fc.weight"] == pytest.approx((0.0, 0.0))
