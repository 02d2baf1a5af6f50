"""End-to-end runs on the bundled digits data: outputs, metrics, resume, interrupt, CLI."""

import json
import textwrap

import pytest
import torch
from click.testing import CliRunner
from support.runs import RUN_SCHEDULE

from prunecli.checkpoint import load_checkpoint, load_model
from prunecli.errors import ConfigError, Interrupted, TrainingDiverged
from prunecli.training import run_training
from prunecli.training.config import merge_config

METRIC_FIELDS = {
    "epoch", "train_loss", "val_loss", "top1", "top5", "lr", "sparsity",
    "params", "nnz_params", "macs", "effective_macs", "time_s",
}  # fmt: skip

@pytest.fixture
def schedule(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(RUN_SCHEDULE)
    return str(path)


def tiny_config(schedule, out_dir, **extra):
    settings = {
        "schedule": schedule,
        "model_args": {"width": 8},
        "dataset": "digits",
        "model": "resnet_digits",
        "epochs": 5,
        "batch_size": 16,
        "lr": 0.05,
        "max_steps_per_epoch": 3,
        "max_eval_batches": 2,
        "out_dir": str(out_dir),
        "device": "cpu",
        "quiet": True,
        "auto_dependency": True,  # BatchNorm channels of pruned filters are zeroed with them
        **extra,
    }
    return merge_config(settings)


def state_of(path):
    return load_checkpoint(path)["state_dict"]


def test_short_run_writes_every_output_with_documented_metrics(schedule, tmp_path):
    run_dir = tmp_path / "run"
    result = run_training(tiny_config(schedule, run_dir))
    for name in ("checkpoint.pt", "best.pt", "compact.pt", "metrics.jsonl", "run.log", "config.yaml",
                 "schedule.yaml", "report.json"):  # fmt: skip
        assert (run_dir / name).is_file(), name
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3, 4]
    assert all(set(r) >= METRIC_FIELDS for r in rows)
    assert all(0 <= r["top1"] <= r["top5"] <= 1 and 0 <= r["sparsity"] < 1 for r in rows)
    # thinning at epoch 3 shrinks the parameter count and MACs; before it, pruning only zeroes weights
    assert rows[2]["params"] == rows[0]["params"] and rows[2]["nnz_params"] < rows[0]["nnz_params"]
    assert rows[3]["params"] < rows[0]["params"] and rows[3]["macs"] < rows[0]["macs"]
    assert rows[4]["lr"] == pytest.approx(0.025)  # StepLR(step_size 4) stepped after epoch 3
    compact = load_model(run_dir / "compact.pt")
    assert compact.layer1[0].conv1.out_channels == 4  # 8 filters at 50 % sparsity
    assert result.compressed["macs"] == rows[-1]["macs"]
    assert result.macs_reduction > 0.2
    assert result.pre_pruning is not None and result.pre_pruning["epoch"] == 1
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    assert ckpt["epoch"] == 4 and len(ckpt["metrics"]) == 5 and ckpt["optimizer_type"] == "SGD"
    # best.pt: Distiller's ranking (fewest non-zero parameters, then top-1, top-5, later epoch)
    expected_best = max(rows, key=lambda r: (-r["nnz_params"], r["top1"], r["top5"], r["epoch"]))["epoch"]
    assert load_checkpoint(run_dir / "best.pt")["epoch"] == expected_best == result.best_epoch
    report = json.loads((run_dir / "report.json").read_text())
    assert report["headline"]["compressed"]["macs"] == rows[-1]["macs"]


@pytest.mark.parametrize("stop_after", [1, 3])
def test_interrupted_then_resumed_run_equals_uninterrupted(schedule, tmp_path, stop_after):
    whole = run_training(tiny_config(schedule, tmp_path / "whole"))
    part = run_training(tiny_config(schedule, tmp_path / "part"), stop_after_epoch=stop_after)
    assert part.stopped_early and part.epochs_completed == stop_after + 1
    assert load_checkpoint(tmp_path / "part" / "checkpoint.pt")["epoch"] == stop_after
    resumed = run_training(resume=tmp_path / "part")
    assert not resumed.stopped_early
    a, b = state_of(tmp_path / "whole" / "checkpoint.pt"), state_of(tmp_path / "part" / "checkpoint.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1, 2, 3, 4]
    assert resumed.test["top1"] == whole.test["top1"]


def test_keyboard_interrupt_leaves_a_resumable_checkpoint(schedule, tmp_path, monkeypatch):
    from prunecli.training import app

    original = app._Run.run_epoch

    def interrupting(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(app._Run, "run_epoch", interrupting)
    with pytest.raises(Interrupted) as info:
        run_training(tiny_config(schedule, tmp_path / "run"))
    assert info.value.exit_code == 130
    assert f"--resume {tmp_path / 'run'}" in info.value.hint
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 1


def test_divergence_exits_3_and_keeps_the_last_good_checkpoint(schedule, tmp_path):
    with pytest.raises(TrainingDiverged) as info:
        run_training(tiny_config(schedule, tmp_path / "run", lr=1e12, momentum=0.0))
    assert info.value.exit_code == 3
    assert "epoch" in info.value.message and "step" in info.value.message
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert all(torch.isfinite(t).all() for t in saved["state_dict"].values() if t.is_floating_point())


def test_out_dir_must_be_new(schedule, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("")
    with pytest.raises(ConfigError):
        run_training(tiny_config(schedule, tmp_path / "run"))


def test_cli_run_and_resume(schedule, tmp_path):
    from prunecli.cli.main import cli

    run_dir = tmp_path / "cli"
    args = [
        "run", schedule, "--model", "resnet_digits", "--set", "model_args={width: 8}", "--epochs", "5",
        "-b", "16", "--max-steps-per-epoch", "2", "--max-eval-batches", "1", "--out-dir", str(run_dir),
        "--device", "cpu", "--stop-after-epoch", "0", "--quiet",
    ]  # fmt: skip
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert f"--resume {run_dir}" in first.output
    second = CliRunner().invoke(cli, ["run", "--resume", str(run_dir), "--json"])
    assert second.exit_code == 0, second.output
    doc = json.loads(second.stdout)
    assert doc["epochs_completed"] == 5 and doc["run_dir"] == str(run_dir)
    bad = CliRunner().invoke(cli, ["run", "--resume", str(run_dir), "--lr", "0.1"])
    assert bad.exit_code == 2 and "cannot change lr" in bad.output


def test_initial_weights_start_from_a_dense_checkpoint(schedule, tmp_path):
    run_training(tiny_config(schedule, tmp_path / "a"), stop_after_epoch=0)
    source = state_of(tmp_path / "a" / "checkpoint.pt")
    part = run_training(
        tiny_config(schedule, tmp_path / "b", initial_weights=str(tmp_path / "a" / "checkpoint.pt")),
        stop_after_epoch=0,
    )
    assert part.stopped_early
    # best.pt is epoch 0 of run b; its starting point was run a's epoch-0 weights, not a fresh init
    first = run_training(tiny_config(schedule, tmp_path / "c"), stop_after_epoch=0)
    assert first.stopped_early
    b, c = state_of(tmp_path / "b" / "checkpoint.pt"), state_of(tmp_path / "c" / "checkpoint.pt")
    assert not torch.equal(b["conv1.weight"], c["conv1.weight"])
    assert source.keys() == b.keys()


def test_initial_weights_of_a_thinned_model_bring_its_architecture(schedule, tmp_path):
    """As Distiller's --exp-load-weights-from: a thinned checkpoint's recipe rebuilds its thin model."""
    from prunecli.models import create_model

    run_training(tiny_config(schedule, tmp_path / "a", epochs=4))  # thinned at epoch 3
    compact = tmp_path / "a" / "compact.pt"
    thin = {k: tuple(v.shape) for k, v in state_of(compact).items()}
    dense, _ = create_model("resnet_digits", dataset="digits", width=8)
    assert thin != {k: tuple(v.shape) for k, v in dense.state_dict().items()}
    run_training(tiny_config(None, tmp_path / "b", initial_weights=str(compact), epochs=1))
    assert {k: tuple(v.shape) for k, v in state_of(tmp_path / "b" / "checkpoint.pt").items()} == thin
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["recipe"] is not None  # it still rebuilds


USER_MODEL = textwrap.dedent(
    """\
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, num_classes=10):
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.fc = nn.Linear(8, num_classes)

        def forward(self, x):
            return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))
    """
)
USER_SCHEDULE = textwrap.dedent(
    """\
    version: 1
    pruners:
      p: {class: L1RankedStructureParameterPruner, group_type: Filters, desired_sparsity: 0.5,
          weights: [conv.weight]}
    extensions:
      t: {class: FilterRemover, thinning_func_str: remove_filters, arch: net, dataset: digits}
    policies:
      - {pruner: {instance_name: p}, epochs: [1]}
      - {extension: {instance_name: t}, epochs: [1]}
    """
)


def test_user_code_model_runs_resumes_with_its_model_named_and_compacts(tmp_path):
    from prunecli.cli.main import cli

    (tmp_path / "net.py").write_text(USER_MODEL)
    (tmp_path / "s.yaml").write_text(USER_SCHEDULE)
    spec = f"{tmp_path / 'net.py'}:Net"
    run_dir = tmp_path / "run"
    args = [
        "run", str(tmp_path / "s.yaml"), "--model", spec, "--dataset", "digits", "--epochs", "3", "-b", "16",
        "--max-steps-per-epoch", "2", "--max-eval-batches", "1", "--out-dir", str(run_dir), "--device", "cpu",
        "--stop-after-epoch", "0", "--quiet",
    ]  # fmt: skip
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    unnamed = CliRunner().invoke(cli, ["run", "--resume", str(run_dir), "--quiet"])
    # its code is not run unasked; the error says how to name it (rich wraps long lines)
    assert unnamed.exit_code == 2 and f"--model {spec}" in unnamed.output.replace("\n", "")
    other = CliRunner().invoke(cli, ["run", "--resume", str(run_dir), "--model", "resnet_digits"])
    assert other.exit_code == 2 and "is not the model of the run being resumed" in other.output
    resumed = CliRunner().invoke(cli, ["run", "--resume", str(run_dir), "--model", spec, "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["epochs_completed"] == 3
    compact = load_model(run_dir / "compact.pt", model=spec)
    assert compact.conv.out_channels == 4 and compact.fc.in_features == 4
