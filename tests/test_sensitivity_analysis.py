"""Sensitivity analysis: CSV figures equal a direct evaluation of the one-shot pruned model."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.utils.data import TensorDataset

from prunecli.errors import PruneCliError  # noqa: E402
from prunecli.report.evaluate import eval_loader, evaluate  # noqa: E402
from prunecli.report.sensitivity import (  # noqa: E402
    CSV_HEADER,
    analysed_parameters,
    analyze,
    prune_one,
    read_csv,
    sparsity_levels,
    write_outputs,
)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10),
    )  # fmt: skip


def _data() -> TensorDataset:
    g = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(40, 1, 8, 8, generator=g), torch.randint(0, 10, (40,), generator=g))


def test_levels_follow_numpy_arange():
    levels = sparsity_levels(0.0, 0.95, 0.05)
    assert len(levels) == 19 and levels[0] == 0.0 and levels[-1] == pytest.approx(0.90)
    assert sparsity_levels(0.2, 0.5, 0.1) == [0.2, 0.3, 0.4]
    with pytest.raises(PruneCliError):
        sparsity_levels(0.5, 0.2, 0.1)
    with pytest.raises(PruneCliError):
        sparsity_levels(0.0, 0.9, 0.0)


def test_parameters_by_kind():
    model = _model()
    assert analysed_parameters(model, "element") == ["0.weight", "2.weight", "6.weight"]
    assert analysed_parameters(model, "filter") == ["0.weight", "2.weight"]  # 4D only


@pytest.mark.parametrize("kind", ["element", "filter", "channel"])
def test_csv_equals_direct_evaluation(tmp_path, kind):
    model, loader = _model(), eval_loader(_data(), batch_size=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    levels = [0.0, 0.5, 0.75]
    points = analyze(model, loader, kind=kind, levels=levels)
    # the analysed model is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    csv_path, png_path = write_outputs(points, tmp_path)
    assert csv_path.read_text().splitlines()[0] == ",".join(CSV_HEADER)
    assert png_path.read_bytes().startswith(b"\x89PNG")
    rows = read_csv(csv_path)
    n_params = len(analysed_parameters(model, kind))
    assert len(rows) == n_params * len(levels)
    # sampled point: the second parameter at 0.5, pruned directly on a fresh copy
    row = next(r for r in rows if r.parameter == "2.weight" and r.sparsity == 0.5)
    pruned = copy.deepcopy(model)
    prune_one(pruned, "2.weight", kind, 0.5)
    w = pruned.get_parameter("2.weight")
    if kind == "element":
        assert int((w == 0).sum()) == w.numel() // 2
    elif kind == "filter":
        assert int((w.abs().sum(dim=(1, 2, 3)) == 0).sum()) == 2  # floor(0.5 * 4) filters
    else:
        assert int((w.abs().sum(dim=(0, 2, 3)) == 0).sum()) == 3  # floor(0.5 * 6) channels
    direct = evaluate(pruned, loader)
    assert (row.top1, row.top5) == (direct.top1, direct.top5)
    assert row.loss == pytest.approx(direct.loss, rel=1e-6)
    # level 0 is the dense model
    dense = evaluate(model, loader)
    assert all(r.top1 == dense.top1 for r in rows if r.sparsity == 0.0)


def test_unknown_parameter_is_user_error():
    with pytest.raises(PruneCliError) as exc:
        analyze(_model(), eval_loader(_data()), levels=[0.5], parameters=["nope.weight"])
    assert "nope.weight" in exc.value.message


def test_cli_on_digits(tmp_path):
    import prunecli.data as data
    import prunecli.models as models
    from prunecli.cli.main import cli

    out = tmp_path / "sens"
    torch.manual_seed(123)  # the CLI builds the model first: the same seed gives the same weights below
    result = CliRunner().invoke(
        cli,
        ["sensitivity", "resnet_digits?width=8", "--dataset", "digits", "--range", "0", "0.9", "0.3",
         "--param", "layer1.0.conv1.weight", "--param", "fc.weight", "--out", str(out), "--json",
         "--max-batches", "2", "--batch-size", "32"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["levels"] == [0.0, 0.3, 0.6]
    rows = read_csv(out / "sensitivity.csv")
    assert [(r.parameter, r.sparsity) for r in rows] == [
        (p, s) for p in ("layer1.0.conv1.weight", "fc.weight") for s in (0.0, 0.3, 0.6)
    ]
    assert [r["top1"] for r in doc["results"]] == [r.top1 for r in rows]
    torch.manual_seed(123)
    model, _ = models.create_model("resnet_digits?width=8", dataset="digits")
    loader = eval_loader(data.load_dataset("digits").test, 32)
    for sampled in (rows[1], rows[5]):  # conv at 0.3, fc at 0.6
        pruned = copy.deepcopy(model)
        prune_one(pruned, sampled.parameter, "element", sampled.sparsity)
        direct = evaluate(pruned, loader, max_batches=2)
        assert direct.samples == 64
        assert (sampled.top1, sampled.top5) == (direct.top1, direct.top5)
        assert sampled.loss == pytest.approx(direct.loss, rel=1e-6)
