"""``timm:NAME`` model source. Skipped when the optional timm package is not installed."""

from __future__ import annotations

import builtins

import pytest
import torch

from prunecli.errors import ModelError
from prunecli.models import ModelSpec, create_model, default_input_shape, parse_spec

timm = pytest.importorskip("timm")


def test_timm_model_is_timms_own_and_round_trips() -> None:
    torch.manual_seed(0)
    model, spec = create_model("timm:resnet18", dataset="cifar10")
    assert spec.to_dict() == {
        "kind": "timm", "name": "resnet18", "kwargs": {"num_classes": 10}, "path": None, "dataset": "cifar10",
    }  # fmt: skip
    assert spec.to_string() == "timm:resnet18?num_classes=10"
    rebuilt = ModelSpec.from_dict(spec.to_dict()).build()
    assert type(rebuilt) is type(model) is timm.models.resnet.ResNet
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 32, 32)
    model.eval(), rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))
        # the oracle: timm's own factory with the same weights
        direct = timm.create_model("resnet18", pretrained=False, num_classes=10).eval()
        direct.load_state_dict(model.state_dict())
        assert torch.equal(direct(x), model(x))


def test_timm_input_shape_comes_from_the_model_config() -> None:
    assert default_input_shape("timm:vit_tiny_patch16_224") == (1, 3, 224, 224)
    assert default_input_shape("timm:inception_v3") == (1, 3, 299, 299)
    assert default_input_shape("timm:resnet18", "cifar10") == (1, 3, 32, 32)


def test_timm_refuses_pretrained_and_unknown_names() -> None:
    with pytest.raises(ModelError, match="never downloaded"):
        create_model("timm:resnet18?pretrained=true")
    with pytest.raises(ModelError, match="timm has no model 'resnet_18'") as info:
        create_model("timm:resnet_18")
    assert "timm:resnet18" in info.value.hint
    with pytest.raises(ModelError, match="bad keyword arguments"):
        create_model("timm:resnet18?no_such_option=1")


def test_missing_timm_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_timm(name, *args, **kwargs):
        if name == "timm" or name.startswith("timm."):
            raise ImportError("No module named 'timm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_timm)
    spec = parse_spec("timm:resnet18")  # parsing needs no timm
    with pytest.raises(ModelError, match="not installed") as info:
        spec.build()
    assert "pip install 'prunecli[timm]'" in info.value.hint


def test_timm_model_thins_and_keeps_its_output() -> None:
    from support.synthetic import exercise

    torch.manual_seed(0)
    model, _ = create_model("timm:convnext_atto")
    result = exercise(model, torch.randn(1, 3, 64, 64), 0.5, seed=0)
    assert result["output_mismatch"] is None
    assert result["params_after"] < result["params_before"]


def test_timm_efficientnet_prunes_like_torchvisions_through_its_fused_batchnorm() -> None:
    """timm's BatchNormAct2d calls F.batch_norm itself; modelled like the module, every group of the
    same architecture in torchvision is prunable and half of each leaves the same parameter count."""
    import torchvision
    from support.synthetic import exercise

    torch.manual_seed(0)
    ours, _ = create_model("timm:efficientnet_b0")
    theirs = torchvision.models.efficientnet_b0()
    x = torch.randn(1, 3, 32, 32)
    timm_result, tv_result = exercise(ours, x, 0.5), exercise(theirs, x, 0.5)
    assert timm_result["params_before"] == tv_result["params_before"]
    assert (timm_result["groups"], timm_result["prunable_groups"]) == (tv_result["groups"], tv_result["prunable_groups"])
    assert timm_result["params_after"] == tv_result["params_after"] < timm_result["params_before"] / 2
    assert timm_result["output_mismatch"] is None and timm_result["verification"]["status"] == "verified"
    assert type(ours.bn1).__name__ == "BatchNormAct2d" and ours.bn1.num_features == ours.conv_stem.out_channels
