"""`prunecli deps` and `prunecli thin` end to end."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner

import prunecli.checkpoint as checkpoint
import prunecli.models as models
from prunecli.cli.main import cli


def test_deps_json_is_one_document_with_groups():
    result = CliRunner().invoke(cli, ["deps", "resnet20_cifar", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["input_shape"] == [1, 3, 32, 32]
    prunable = [g for g in doc["groups"] if g["prunable"]]
    # resnet20: 9 intra-block groups + 3 residual streams
    assert len(prunable) == 12
    member = doc["groups"][0]["members"][0]
    assert set(member) == {"tensor", "dim", "offset", "block", "role"}


def test_deps_table_and_bad_input_shape():
    runner = CliRunner()
    result = runner.invoke(cli, ["deps", "resnet20_cifar", "--input-shape", "1,3,32,32", "--all"])
    assert result.exit_code == 0 and "layer1.0.conv1.weight" in result.output
    bad = runner.invoke(cli, ["deps", "resnet20_cifar", "--input-shape", "1,three"])
    assert bad.exit_code == 2 and "input-shape" in bad.output


def _write_checkpoint(path, zero=(1, 3, 5)):
    model, spec = models.create_model("resnet20_cifar")
    masks = {}
    with torch.no_grad():
        mask = torch.ones_like(model.layer1[0].conv1.weight)
        mask[list(zero)] = 0
        masks["layer1.0.conv1.weight"] = mask
        model.layer1[0].conv1.weight.mul_(mask)
    payload = checkpoint.build_checkpoint(state_dict=model.state_dict(), model=spec.to_dict(), masks=masks)
    checkpoint.save_checkpoint(path, payload)
    return model


def test_thin_writes_a_compact_checkpoint_that_reloads_with_the_same_output(tmp_path):
    src = tmp_path / "run.pt"
    dense = _write_checkpoint(src).eval()
    result = CliRunner().invoke(cli, ["thin", str(src), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    out = tmp_path / "run.compact.pt"
    assert doc["output"] == str(out) and out.exists()
    assert doc["removed_channels"] == 3 and doc["params_after"] < doc["params_before"]
    thin = checkpoint.load_model(out)
    assert thin.layer1[0].conv1.out_channels == 13
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(thin(x), dense(x), rtol=1e-5, atol=1e-6)
    stored = checkpoint.load_checkpoint(out)
    # the filter mask is all ones once its zero filters are gone: it carries nothing and is dropped
    assert "layer1.0.conv1.weight" not in stored["masks"]
    assert stored["optimizer"] is None and stored["scheduler"] is None


def test_thin_keeps_fine_grained_masks_sliced_to_the_new_shapes(tmp_path):
    src = tmp_path / "run.pt"
    model, spec = models.create_model("resnet20_cifar")
    filters = torch.ones_like(model.layer1[0].conv1.weight)
    filters[[1, 3, 5]] = 0
    elements = (torch.arange(model.layer1[0].conv2.weight.numel()) % 3 != 0).float()
    elements = elements.reshape(model.layer1[0].conv2.weight.shape)
    masks = {"layer1.0.conv1.weight": filters, "layer1.0.conv2.weight": elements}
    payload = checkpoint.build_checkpoint(state_dict=model.state_dict(), model=spec.to_dict(), masks=masks)
    checkpoint.save_checkpoint(src, payload)
    result = CliRunner().invoke(cli, ["thin", str(src), "--json"])
    assert result.exit_code == 0, result.output
    stored = checkpoint.load_checkpoint(tmp_path / "run.compact.pt")
    kept_inputs = [c for c in range(16) if c not in (1, 3, 5)]
    assert set(stored["masks"]) == {"layer1.0.conv2.weight"}
    torch.testing.assert_close(stored["masks"]["layer1.0.conv2.weight"], elements[:, kept_inputs])


def test_thin_bad_input_exits_2(tmp_path):
    missing = CliRunner().invoke(cli, ["thin", str(tmp_path / "nope.pt")])
    assert missing.exit_code == 2
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert CliRunner().invoke(cli, ["thin", str(junk)]).exit_code == 2
