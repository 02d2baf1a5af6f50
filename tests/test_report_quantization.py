"""The quantization section of the report, `prunecli thin` on a checkpoint carrying a plan, and gates.

Oracles: byte counts worked out from the model's layer shapes (resnet_digits: 77,290 parameters,
docs/quickstart.md), the plan's own per-channel slicing, and the float model's outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import torch
from click.testing import CliRunner
from support.quantization import with_statistics

from prunecli.checkpoint import build_checkpoint, load_checkpoint, load_model, save_checkpoint
from prunecli.cli.main import cli
from prunecli.errors import GateFailed, PruneCliError
from prunecli.models import create_model
from prunecli.quantization.int8 import Int8Model
from prunecli.quantization.minmax import minmax_plan
from prunecli.quantization.stored import store_plan
from prunecli.report.build import ReportOptions, build_report
from prunecli.report.gates import enforce_gates, evaluate_gates
from prunecli.report.html import to_html
from prunecli.report.render import to_json, to_markdown

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "docs" / "report-schema.json").read_text())

# resnet_digits: 77,290 parameters; BatchNorm widths 32, 32, 32, 64, 64, 64 (mean and variance
# float32 each, one int64 counter each)
BN_CHANNELS, BN_COUNT, PARAMS = 288, 6, 77_290
FP32_BYTES = 4 * (PARAMS + 2 * BN_CHANNELS) + 8 * BN_COUNT
# int8: one byte per conv / linear weight; float32 bias per output channel (BatchNorm folded in);
# per-channel weight scale (float32) and zero point (int32); input and output ranges of the 7
# layers and the output ranges of the 2 residual additions and 6 BatchNorms (float32 scale + int32
# zero point each)
WEIGHTS = 1 * 32 * 9 + 2 * 32 * 32 * 9 + 32 * 64 * 9 + 64 * 64 * 9 + 32 * 64 + 64 * 10
OUT_CHANNELS = 32 * 3 + 64 * 3 + 10
INT8_BYTES = WEIGHTS + 4 * OUT_CHANNELS + 8 * OUT_CHANNELS + 8 * (2 * 7 + 2 + 6)


@pytest.fixture(scope="module")
def quantized_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model, spec = create_model("resnet_digits", dataset="digits")
    with_statistics(model)
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(16, 1, 8, 8, generator=gen) for _ in range(2)]
    plan = minmax_plan(model, batches, batches[0][:1])
    path = tmp_path_factory.mktemp("q") / "model.pt"
    save_checkpoint(path, store_plan(build_checkpoint(state_dict=model.state_dict(), model=spec), plan))
    return path


def test_sizes_bits_and_formats_of_a_checkpoint_carrying_a_plan(quantized_checkpoint):
    report = build_report(quantized_checkpoint, ReportOptions(latency=False))
    jsonschema.validate(json.loads(to_json(report)), SCHEMA)
    q = report["quantization"]
    assert not q["stored_int8"] and q["int8_layers"] == 9 and q["simulated_layers"] == 0
    assert q["fp32_bytes"] == FP32_BYTES == 311_512
    assert q["pruned_bytes"] == FP32_BYTES  # not thinned
    assert q["int8_bytes"] == INT8_BYTES
    assert q["int8_size_ratio"] == pytest.approx(INT8_BYTES / FP32_BYTES)
    rows = {r["name"]: r["bits"] for r in report["sparsity_table"]["rows"]}
    assert rows["conv1.weight"] == 8 and rows["fc.weight"] == 8
    markdown, html = to_markdown(report), to_html(report)
    assert "## Quantization" in markdown and "| Bits |" in markdown
    assert "<h2>Quantization</h2>" in html


def test_the_int8_checkpoint_reports_the_same_sizes_and_its_own_latency(quantized_checkpoint, tmp_path):
    out = tmp_path / "model.compact.pt"
    result = CliRunner().invoke(cli, ["thin", str(quantized_checkpoint), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["int8"]["bytes_int8"] == INT8_BYTES and doc["int8"]["kernels"] == 9
    assert isinstance(load_model(out), Int8Model)
    report = build_report(out, ReportOptions(latency_runs=2, latency_warmup=0, deployed_latency=False))
    jsonschema.validate(json.loads(to_json(report)), SCHEMA)
    q = report["quantization"]
    assert q["stored_int8"] and q["int8_bytes"] == INT8_BYTES and q["fp32_bytes"] == FP32_BYTES
    assert q["int8_speedup"] == pytest.approx(q["fp32_latency_ms"] / q["int8_latency_ms"])
    # the compressed model of an int8 file is the int8 model
    assert report["headline"]["compressed"]["latency_ms"] is not None


def test_thin_no_int8_keeps_the_float_model(quantized_checkpoint, tmp_path):
    out = tmp_path / "float.pt"
    result = CliRunner().invoke(
        cli, ["thin", str(quantized_checkpoint), "-o", str(out), "--no-int8", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["int8"] is None
    assert "int8" not in load_checkpoint(out)["extras"]
    again = CliRunner().invoke(cli, ["thin", str(out), "-o", str(tmp_path / "x.pt")])
    assert again.exit_code == 0  # a float file (plan kept) thins again


def test_gates_read_the_quantization_fields(quantized_checkpoint):
    report = build_report(quantized_checkpoint, ReportOptions(latency=False))
    passed = evaluate_gates(report, ["quantization.int8_size_ratio > 0.3"])
    assert not passed[0].failed
    failed = evaluate_gates(report, ["quantization.int8_size_ratio < 0.3"])
    with pytest.raises(GateFailed, match="1 of 1"):
        enforce_gates(failed)
    with pytest.raises(PruneCliError, match="no value"):
        evaluate_gates(report, ["quantization.int8_latency_ms > 1"])  # latency not measured
    with pytest.raises(PruneCliError, match="quantization.int8_bytes"):
        evaluate_gates(report, ["quantization.int8_byte > 1"])  # unknown: the hint lists the real ones


def test_accuracy_before_and_after_quantization(quantized_checkpoint):
    options = ReportOptions(latency=False, evaluate="digits", max_batches=1)
    q = build_report(quantized_checkpoint, options)["quantization"]
    assert q["fp32_top1"] is not None and q["int8_top1"] is not None
    assert q["int8_top1_delta"] == pytest.approx(q["int8_top1"] - q["fp32_top1"])


def test_an_int8_checkpoint_is_not_thinned_again(quantized_checkpoint, tmp_path):
    out = tmp_path / "int8.pt"
    assert CliRunner().invoke(cli, ["thin", str(quantized_checkpoint), "-o", str(out)]).exit_code == 0
    again = CliRunner().invoke(cli, ["thin", str(out), "-o", str(tmp_path / "again.pt")])
    assert again.exit_code == 2 and "already an int8 checkpoint" in again.output


def test_pruned_then_int8_matches_converting_the_thinned_float_model(tmp_path):
    from prunecli.api import thin
    from prunecli.quantization.int8 import convert_to_int8, thin_plan

    torch.manual_seed(0)
    model, spec = create_model("resnet_digits", dataset="digits")
    with_statistics(model)
    masks = {}
    with torch.no_grad():
        for name in ("layer1.0.conv1", "layer2.0.conv1"):
            weight = model.get_submodule(name).weight
            mask = torch.ones_like(weight)
            mask[::2] = 0  # half the filters
            weight.mul_(mask)
            masks[f"{name}.weight"] = mask
            norm = model.get_submodule(name.replace("conv1", "bn1"))
            norm.weight[::2] = 0  # the BatchNorm then outputs 0 there too: the filters are removable
            norm.bias[::2] = 0
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    plan = minmax_plan(model.eval(), [x], x[:1])
    src = tmp_path / "pruned.pt"
    save_checkpoint(
        src, store_plan(build_checkpoint(state_dict=model.state_dict(), model=spec, masks=masks), plan)
    )
    summary = thin(src, tmp_path / "int8.pt")
    float_summary = thin(src, tmp_path / "float.pt", int8=False)
    assert summary.int8 is not None and summary.params_after < summary.params_before
    assert summary.int8["bytes_int8"] < 0.3 * summary.int8["bytes_fp32"]
    int8 = load_model(tmp_path / "int8.pt")
    thinned = load_model(tmp_path / "float.pt")
    assert thinned.layer1[0].conv1.out_channels == 16 and float_summary.int8 is None
    recipe = load_checkpoint(tmp_path / "float.pt")["recipe"]["tensors"]
    reference = convert_to_int8(thinned, thin_plan(plan, recipe), x[:1])
    with torch.no_grad():
        assert torch.equal(int8(x), reference(x))
        # and it is still the pruned model, within int8 rounding
        assert (int8(x) - model(x)).abs().max() < 0.05 * model(x).abs().max()


def test_sensitivity_refuses_an_int8_checkpoint(quantized_checkpoint, tmp_path):
    out = tmp_path / "int8.pt"
    assert CliRunner().invoke(cli, ["thin", str(quantized_checkpoint), "-o", str(out)]).exit_code == 0
    result = CliRunner().invoke(cli, ["sensitivity", str(out), "--dataset", "digits"])
    assert result.exit_code == 2 and "int8 model" in result.output and "--no-int8" in result.output
