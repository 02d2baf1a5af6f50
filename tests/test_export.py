"""BatchNorm folding and verified export (ONNX / TorchScript / exported program)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from prunecli.checkpoint import build_checkpoint, save_checkpoint
from prunecli.cli.main import cli
from prunecli.errors import ExportError
from prunecli.export import export_model, fold_batchnorm
from prunecli.models import create_model

HAS_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason='needs the export extra (pip install -e ".[export]")')


def _randomise_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics, so a wrong fold cannot pass by accident."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g))
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g))
    return model.eval()


class Net(nn.Module):
    """conv->BN (foldable), conv->BN whose conv output is also used elsewhere (not foldable),
    linear->BN1d on (N, C) (foldable), linear->BN1d on (N, L, C) (not foldable)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.bn2 = nn.BatchNorm2d(4)
        self.fc1 = nn.Linear(4, 6)
        self.bn3 = nn.BatchNorm1d(6)
        self.fc2 = nn.Linear(4, 4)
        self.bn4 = nn.BatchNorm1d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        y = self.conv2(x)
        x = self.bn2(y) + y
        pooled = x.mean((2, 3))
        seq = self.bn4(self.fc2(x.flatten(2).transpose(1, 2)[:, :4, :]))
        return self.bn3(self.fc1(pooled)) + seq.mean((1, 2)).unsqueeze(1)


def test_folding_a_one_channel_pair_gives_the_hand_computed_weight_and_bias():
    conv, bn = nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1, eps=1.0)
    with torch.no_grad():
        conv.weight.fill_(2.0)
        conv.bias.fill_(0.5)
        bn.running_mean.fill_(1.0)
        bn.running_var.fill_(3.0)
        bn.weight.fill_(4.0)
        bn.bias.fill_(5.0)
    folded = fold_batchnorm(nn.Sequential(conv, bn), torch.randn(1, 1, 2, 2))
    # w' = w * gamma / sqrt(var + eps) = 2 * 4 / 2 = 4;  b' = (b - mean) * gamma / sqrt(var + eps) + beta = 4
    assert folded.model[0].weight.item() == pytest.approx(4.0)
    assert folded.model[0].bias.item() == pytest.approx(4.0)
    assert isinstance(folded.model[1], nn.Identity)
    assert [(p.layer, p.norm) for p in folded.pairs] == [("0", "1")]


def test_folding_keeps_the_function_and_skips_what_is_not_a_plain_pair():
    model = _randomise_norms(Net())
    x = torch.randn(2, 3, 8, 8)
    result = fold_batchnorm(model, x)
    assert sorted((p.layer, p.norm) for p in result.pairs) == [("conv1", "bn1"), ("fc1", "bn3")]
    assert isinstance(model.bn1, nn.BatchNorm2d), "the original model is left unchanged"
    assert isinstance(result.model.bn2, nn.BatchNorm2d) and isinstance(result.model.bn4, nn.BatchNorm1d)
    with torch.no_grad():
        torch.testing.assert_close(result.model(x), model(x), rtol=1e-5, atol=1e-5)


def test_folding_a_zoo_model_keeps_its_output_in_eval_mode():
    model = _randomise_norms(create_model("resnet20_cifar")[0])
    x = torch.randn(2, 3, 32, 32)
    result = fold_batchnorm(model, x)
    # every BatchNorm of resnet20 (stem, 18 block convolutions, 2 downsampling convolutions) follows its own conv
    assert len(result.pairs) == 21 == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(result.model(x), model(x), rtol=1e-4, atol=1e-4)


class Counter(nn.Module):
    """Eager output changes on every call: a traced artefact freezes one value and must be caught."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * self.calls


class QR(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.qr(x[..., :3, :3])[0]


def _small() -> nn.Module:
    return _randomise_norms(
        nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(1), nn.Linear(8 * 36, 5))
    )


@pytest.mark.parametrize("fmt", [pytest.param("onnx", marks=needs_onnx), "torchscript", "exported-program"])
def test_export_writes_a_file_whose_runtime_reproduces_the_model(tmp_path, fmt):
    model = _small()
    out = tmp_path / f"m.{fmt}"
    report = export_model(model, torch.randn(1, 3, 8, 8), out, format=fmt, fold_bn=True, dynamic_batch=True)
    assert out.exists() and out.stat().st_size == report.file_bytes
    assert report.folded_batchnorms == 1 and report.max_error < 1e-5
    assert report.verified_inputs == [[1, 3, 8, 8], [3, 3, 8, 8]]  # other batch sizes than the export's
    assert [p.name for p in tmp_path.iterdir()] == ["m." + fmt]


@needs_onnx
def test_onnx_file_runs_in_onnxruntime_with_another_batch_size(tmp_path):
    import onnxruntime as ort

    model = _small()
    export_model(model, torch.randn(1, 3, 8, 8), tmp_path / "m.onnx", format="onnx", dynamic_batch=True)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(7, 3, 8, 8)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fmt", ["torchscript", pytest.param("onnx", marks=needs_onnx)])
def test_a_mismatch_names_the_layer_and_leaves_no_file(tmp_path, fmt):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), Counter(), nn.ReLU()).eval()
    out = tmp_path / "m.bin"
    with pytest.raises(ExportError) as info:
        export_model(model, torch.randn(1, 3, 4, 4), out, format=fmt)
    assert "layer '1'" in info.value.message and "Counter" in info.value.message
    assert "no file was written" in info.value.message
    assert list(tmp_path.iterdir()) == []


@needs_onnx
def test_an_unsupported_operation_names_the_layer(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), QR()).eval()
    with pytest.raises(ExportError) as info:
        # opset 17: the TorchScript-based exporter alone (the torch.export-based fallback starts at 18)
        export_model(model, torch.randn(1, 3, 4, 4), tmp_path / "m.onnx", format="onnx", opset=17)
    assert "layer '1'" in info.value.message and "linalg_qr" in info.value.message
    assert list(tmp_path.iterdir()) == []


def test_unknown_format_and_bad_opset_are_refused_before_any_work(tmp_path):
    with pytest.raises(ExportError, match="unknown export format 'tflite'") as info:
        export_model(_small(), torch.randn(1, 3, 8, 8), tmp_path / "m", format="tflite")
    assert "onnx, torchscript, exported-program" in (info.value.hint or "")
    if HAS_ONNX:
        with pytest.raises(ExportError, match="opset 99 cannot be written"):
            export_model(_small(), torch.randn(1, 3, 8, 8), tmp_path / "m", format="onnx", opset=99)
    assert list(tmp_path.iterdir()) == []


def test_missing_extra_says_how_to_install_it(tmp_path, monkeypatch):
    import prunecli.export.formats as formats

    real = formats.importlib.util.find_spec
    monkeypatch.setattr(
        formats.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxruntime" else real(name, *a),
    )
    with pytest.raises(ExportError) as info:
        export_model(_small(), torch.randn(1, 3, 8, 8), tmp_path / "m.onnx", format="onnx")
    assert "onnxruntime" in info.value.message
    assert 'pip install -e ".[export]"' in (info.value.hint or "")


def _checkpoint(path, name="resnet_digits"):
    model, spec = create_model(name)
    _randomise_norms(model)
    save_checkpoint(path, build_checkpoint(state_dict=model.state_dict(), model=spec.to_dict(), masks={}))
    return model


def test_cli_exports_a_checkpoint_and_prints_the_tolerance(tmp_path):
    src = tmp_path / "run.pt"
    model = _checkpoint(src)
    result = CliRunner().invoke(
        cli, ["export", str(src), "--format", "exported-program", "--fold-bn", "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["output"] == str(tmp_path / "run.pt2") and doc["tolerance"] == 1e-4
    assert doc["folded_batchnorms"] == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert doc["checkpoint_bytes"] == src.stat().st_size
    program = torch.export.load(str(tmp_path / "run.pt2")).module()
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(program(x), model(x), rtol=1e-4, atol=1e-4)
    text = CliRunner().invoke(
        cli, ["export", str(src), "--format", "torchscript", "-o", str(tmp_path / "a.ts")]
    )
    assert text.exit_code == 0 and (tmp_path / "a.ts").exists()
    assert "(tolerance 1e-04)" in " ".join(text.output.split())


def test_cli_bad_inputs_exit_2_with_one_message_and_no_file(tmp_path):
    src = tmp_path / "run.pt"
    _checkpoint(src)
    runner = CliRunner()
    bad_format = runner.invoke(cli, ["export", str(src), "--format", "tflite"])
    assert bad_format.exit_code == 2 and "unknown export format" in bad_format.output
    assert "Traceback" not in bad_format.output
    wrong_model = runner.invoke(
        cli, ["export", str(src), "--format", "torchscript", "--model", "resnet20_cifar"]
    )
    assert wrong_model.exit_code == 2 and "do not fit" in wrong_model.output
    if HAS_ONNX:
        opset = runner.invoke(cli, ["export", str(src), "--format", "onnx", "--opset", "3"])
        assert opset.exit_code == 2 and "--opset between" in opset.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]


@needs_onnx
@pytest.mark.slow
def test_onnx_falls_back_to_the_torch_export_based_exporter(tmp_path):
    # adaptive pooling to a size that does not divide the input: the TorchScript-based exporter refuses it
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(3), nn.Flatten(1), nn.Linear(36, 2)).eval()
    report = export_model(model, torch.randn(1, 3, 4, 4), tmp_path / "m.onnx", format="onnx")
    assert report.opset == 18 and report.max_error < 1e-5 and (tmp_path / "m.onnx").exists()
