"""Pruning every filter of a tensor: thinning keeps one zero channel and says so, loudly and on record.

Distiller refuses such a model at thinning time; prunecli keeps the network connected (one zero
channel, constant output) and the warning travels in the recipe to ``prunecli thin`` and to a run.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from click.testing import CliRunner

from prunecli.checkpoint import build_checkpoint, save_checkpoint
from prunecli.cli.main import cli
from prunecli.models import create_model
from prunecli.thinning import ThinningRecipe, thin_model

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _all_filters_zero():
    torch.manual_seed(0)
    model, spec = create_model("resnet20_cifar", dataset="cifar10")
    with torch.no_grad():
        model.layer1[0].conv1.weight.zero_()
        model.layer1[0].bn1.weight.zero_()
        model.layer1[0].bn1.bias.zero_()
    return model.eval(), spec


def test_thin_model_keeps_one_channel_and_records_a_warning() -> None:
    model, _ = _all_filters_zero()
    expected = model(X)
    recipe = thin_model(model, X[:1])
    assert model.layer1[0].conv1.weight.shape == (1, 16, 3, 3)  # 16 zero filters, one kept
    torch.testing.assert_close(model(X), expected)
    [warning] = recipe.warnings
    assert "all 16 channels of layer1.0.conv1.weight are zero" in warning
    assert "layer1.0.conv2.weight" in warning and "final_sparsity" in warning
    assert ThinningRecipe.from_dict(recipe.to_dict()).warnings == [warning]  # kept in checkpoints


def test_prunecli_thin_prints_the_warning(tmp_path: Path) -> None:
    model, spec = _all_filters_zero()
    path = tmp_path / "zero.pt"
    save_checkpoint(path, build_checkpoint(state_dict=model.state_dict(), model=spec))
    result = CliRunner().invoke(cli, ["thin", str(path), "-o", str(tmp_path / "c.pt"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert len(doc["warnings"]) == 1 and "every filter was pruned" in doc["warnings"][0]
    assert "warning:" in " ".join(result.stderr.split())


SCHEDULE = """\
version: 1
pruners:
  everything:
    class: StructureParameterPruner
    threshold_criteria: Max
    reg_regims:
      module.layer1.0.conv1.weight: [1000.0, Filters]
extensions:
  thinner:
    class: FilterRemover
    thinning_func_str: remove_filters
    arch: resnet20_cifar
    dataset: cifar10
policies:
  - pruner: {instance_name: everything}
    epochs: [0]
  - extension: {instance_name: thinner}
    epochs: [0]
"""


def test_a_run_lists_the_warning(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SCHEDULE)
    args = [
        "run",
        str(tmp_path / "s.yaml"),
        "--dataset",
        "fake",
        "--epochs",
        "1",
        "--max-steps-per-epoch",
        "1",
    ]
    args += ["-b", "4", "--max-eval-batches", "1", "--json", "-o", str(tmp_path / "run")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    warnings = json.loads(result.stdout)["warnings"]
    assert any("all 16 channels of layer1.0.conv1.weight are zero" in w for w in warnings), warnings
