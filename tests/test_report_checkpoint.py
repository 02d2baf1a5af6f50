"""`prunecli report` on real checkpoint files and run directories, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import torch
from click.testing import CliRunner

import prunecli.checkpoint as checkpoint
import prunecli.models as models
from prunecli.cli.main import cli  # noqa: E402
from prunecli.report.build import ReportOptions, build_report  # noqa: E402

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "docs" / "report-schema.json").read_text())
SPEC = "resnet_digits?width=8"
HISTORY = [
    {"epoch": 0, "train_loss": 2.0, "val_loss": 1.5, "top1": 0.6, "top5": 0.9, "lr": 0.1, "sparsity": 0.1},
    {"epoch": 1, "train_loss": 1.0, "val_loss": 0.8, "top1": 0.85, "top5": 0.99, "lr": 0.1, "sparsity": 0.3},
]
SCHEDULE = """version: 1
pruners:
  p:
    class: AutomatedGradualPruner
    initial_sparsity: 0.1
    final_sparsity: 0.3
    weights: [layer1.0.conv1.weight]
policies:
  - pruner: {instance_name: p}
    starting_epoch: 0
    ending_epoch: 2
    frequency: 1
"""


def _write_checkpoint(path: Path, *, with_history: bool = True) -> dict[str, int]:
    torch.manual_seed(0)
    model, spec = models.create_model(SPEC, dataset="digits")
    w = model.get_parameter("layer1.0.conv1.weight")
    with torch.no_grad():
        w[: w.shape[0] // 2] = 0  # half the filters zero (masked, not thinned)
    payload = checkpoint.build_checkpoint(
        state_dict=model.state_dict(),
        model=spec,
        epoch=1,
        metrics=HISTORY if with_history else [],
        schedule_text=SCHEDULE,
    )
    checkpoint.save_checkpoint(path, payload)
    params = list(model.parameters())
    return {"nnz": sum(int((p != 0).sum()) for p in params), "params": sum(p.numel() for p in params)}


def test_checkpoint_report_counts(tmp_path):
    facts = _write_checkpoint(tmp_path / "m.pt")
    report = build_report(tmp_path / "m.pt", ReportOptions(latency=False))
    jsonschema.validate(report, SCHEMA)
    dense, comp = report["headline"]["dense"], report["headline"]["compressed"]
    assert dense["params"] == comp["params"] == facts["params"]
    assert comp["nnz_params"] == facts["nnz"] < facts["params"]
    assert report["macs_ratio"] == 1.0  # masked only: shapes unchanged
    assert report["effective_macs_ratio"] < 1.0
    assert comp["file_bytes"] == (tmp_path / "m.pt").stat().st_size
    assert report["top1"] == 0.85 and report["model"]["name"] == "resnet_digits"
    assert report["history"] == HISTORY
    assert [c["pruner"] for c in report["schedule"]["agp"]] == ["p"]
    row = next(r for r in report["sparsity_table"]["rows"] if r["name"] == "layer1.0.conv1.weight")
    assert row["pct_3d"] == 50.0


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    _write_checkpoint(run / "checkpoint.pt", with_history=False)
    (run / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in HISTORY))
    (run / "schedule.yaml").write_text(SCHEDULE)
    return run


def _invoke(*args: str):
    return CliRunner().invoke(
        cli, ["report", *args, "--latency-runs", "2", "--warmup", "0", "--no-deployed-latency"]
    )


def test_cli_json_run_dir_and_gate_pass(tmp_path):
    run = _run_dir(tmp_path)
    result = _invoke(str(run), "--json", "--fail-if", "top1 < 0.8", "--fail-if", "macs_ratio > 1.5")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # stdout holds exactly one JSON document
    jsonschema.validate(doc, SCHEMA)
    assert doc["source"]["kind"] == "run_dir" and doc["history"] == HISTORY
    assert doc["top1"] == 0.85  # from metrics.jsonl (the checkpoint itself has no metrics)


def test_cli_gate_fails_with_exit_1(tmp_path):
    run = _run_dir(tmp_path)
    result = _invoke(str(run), "--no-latency", "--fail-if", "top1 < 0.90")
    assert result.exit_code == 1
    assert "top1 < 0.9" in result.stderr and "actual top1 = 0.85" in result.stderr


@pytest.mark.parametrize("gate", ["top1 ~ 0.9", "nonsense > 1"])
def test_cli_bad_gate_exit_2(tmp_path, gate):
    run = _run_dir(tmp_path)
    result = _invoke(str(run), "--no-latency", "--fail-if", gate)
    assert result.exit_code == 2
    if gate.startswith("nonsense"):
        assert "macs_ratio" in result.stderr  # the available fields are listed


def test_cli_html_and_markdown(tmp_path):
    run = _run_dir(tmp_path)
    html = tmp_path / "r.html"
    result = _invoke(str(run), "--no-latency", "--markdown", "--html", str(html))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# prunecli report: resnet_digits")
    page = html.read_text()
    assert page.count('src="data:image/png;base64,') == 4
    assert "http://" not in page and "https://" not in page


def test_cli_missing_source_exit_2(tmp_path):
    result = _invoke(str(tmp_path / "nope"), "--no-latency")
    assert result.exit_code == 2 and "no such checkpoint" in result.stderr


def test_evaluate_option_matches_direct_evaluation(tmp_path):
    import prunecli.data as data
    from prunecli.report.evaluate import eval_loader, evaluate

    _write_checkpoint(tmp_path / "m.pt")
    result = _invoke(str(tmp_path / "m.pt"), "--no-latency", "--json", "--evaluate", "digits",
                     "--max-batches", "2", "--eval-batch-size", "16")  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["source"]["accuracy_from"] == "evaluate:digits"
    model = checkpoint.load_model(tmp_path / "m.pt")
    direct = evaluate(model, eval_loader(data.load_dataset("digits").test, 16), max_batches=2)
    assert (doc["top1"], doc["top5"]) == (direct.top1, direct.top5)
    assert doc["headline"]["compressed"]["loss"] == pytest.approx(direct.loss)


def test_weights_only_checkpoint_needs_model(tmp_path):
    torch.manual_seed(0)
    model, spec = models.create_model(SPEC, dataset="digits")
    payload = checkpoint.build_checkpoint(state_dict=model.state_dict(), model=None)
    checkpoint.save_checkpoint(tmp_path / "w.pt", payload)
    refused = _invoke(str(tmp_path / "w.pt"), "--no-latency")
    assert refused.exit_code == 2 and "--model" in refused.stderr
    result = _invoke(str(tmp_path / "w.pt"), "--no-latency", "--json", "--model", SPEC)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["model"]["name"] == "resnet_digits"
    assert doc["headline"]["dense"]["params"] == sum(p.numel() for p in model.parameters())


def test_distiller_checkpoint_matches_published_resnet20_figures(tmp_path):
    """A Distiller-format resnet20_cifar checkpoint: Distiller's own published dense figures."""
    model, _ = models.create_model("resnet20_cifar", dataset="cifar10")
    state = {"module." + k: v for k, v in model.state_dict().items()}  # DataParallel names
    path = tmp_path / "checkpoint.pth.tar"
    torch.save(
        {"epoch": 179, "arch": "resnet20_cifar", "dataset": "cifar10", "state_dict": state,
         "extras": {"current_top1": 91.78, "best_top1": 91.78, "best_epoch": 170}},
        path,
    )  # fmt: skip
    report = build_report(path, ReportOptions(latency=False))
    jsonschema.validate(report, SCHEMA)
    # examples/*/resnet20*: "Total MACs: 40,813,184" and "# of parameters: 270,896"
    assert report["headline"]["dense"]["macs"] == report["headline"]["compressed"]["macs"] == 40_813_184
    assert report["sparsity_table"]["total"]["nnz_dense"] == 270_896
    assert report["top1"] == pytest.approx(0.9178)
    assert report["source"]["accuracy_from"] == "distiller:current_top1"
