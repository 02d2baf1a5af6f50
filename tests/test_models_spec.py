"""Model spec strings: every form, keyword arguments, round-trips through plain data, and errors."""

from __future__ import annotations

import io
import textwrap

import pytest
import torch

from prunecli.errors import ModelError, PruneCliError
from prunecli.models import ModelSpec, available_models, create_model, default_input_shape, parse_spec


def test_zoo_name_and_distiller_torchvision_names() -> None:
    assert parse_spec("resnet20_cifar") == ModelSpec("zoo", "resnet20_cifar")
    assert parse_spec("ResNet20_CIFAR").name == "resnet20_cifar"  # Distiller lower-cases --arch
    for name in (
        "resnet18",
        "alexnet",
        "vgg16",
        "squeezenet1_0",
        "densenet121",
        "inception_v3",
        "mobilenet_v2",
    ):
        spec = parse_spec(name)
        assert (spec.kind, spec.name) == ("torchvision", name)
    assert parse_spec("torchvision:resnet18").kind == "torchvision"


def test_query_keyword_arguments_are_typed() -> None:
    spec = parse_spec("mobilenet?channel_multiplier=0.5&num_classes=10")
    assert spec.kwargs == {"channel_multiplier": 0.5, "num_classes": 10}
    spec = parse_spec("torchvision:resnet18?num_classes=7&zero_init_residual=true")
    assert spec.kwargs == {"num_classes": 7, "zero_init_residual": True}
    with pytest.raises(ModelError, match="bad keyword argument"):
        parse_spec("resnet18?num_classes")


def test_torchvision_model_never_downloads_and_takes_kwargs() -> None:
    model, spec = create_model("torchvision:squeezenet1_1?num_classes=10")
    assert spec.kwargs == {"num_classes": 10}
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 10)
    with pytest.raises(ModelError, match="never downloaded"):
        create_model("torchvision:resnet18", weights="IMAGENET1K_V1")
    with pytest.raises(ModelError, match="no classification model"):
        create_model("torchvision:fasterrcnn_resnet50_fpn")


def test_kwargs_argument_and_num_classes() -> None:
    model, spec = create_model("resnet20_cifar", num_classes=100)
    assert model.fc.out_features == 100 and spec.kwargs["num_classes"] == 100
    model, spec = create_model("resnet20_cifar", dataset="cifar100")
    assert model.fc.out_features == 100 and spec.dataset == "cifar100"
    model, _ = create_model("mobilenet", channel_multiplier=0.25, num_classes=5)
    assert model.fc.weight.shape == (5, 256)


def test_round_trip_through_plain_data_and_weights_only_load() -> None:
    model, spec = create_model("preact_resnet20_cifar?conv_downsample=true", num_classes=4, dataset="cifar10")
    buf = io.BytesIO()
    torch.save({"model": spec.to_dict()}, buf)
    buf.seek(0)
    data = torch.load(buf, weights_only=True)["model"]
    rebuilt = ModelSpec.from_dict(data).build()
    assert [(n, p.shape) for n, p in rebuilt.named_parameters()] == [
        (n, p.shape) for n, p in model.named_parameters()
    ]
    assert parse_spec(spec.to_string()).kwargs == spec.kwargs
    with pytest.raises(ModelError):
        ModelSpec.from_dict({"kind": "nonsense", "name": "x"})


def test_import_form() -> None:
    model, spec = create_model("prunecli.models.cifar.resnet:resnet20_cifar", num_classes=3)
    assert spec.kind == "import" and model.fc.out_features == 3
    rebuilt = ModelSpec.from_dict(spec.to_dict()).build()
    assert rebuilt.fc.out_features == 3
    with pytest.raises(ModelError, match="cannot import module"):
        create_model("no_such_pkg.models:factory")
    with pytest.raises(ModelError, match="not found in prunecli.models.zoo"):
        create_model("prunecli.models.zoo:nothing_here")


def write(tmp_path, body: str):
    path = tmp_path / "my_model.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_file_form_executes_that_file(tmp_path) -> None:
    path = write(
        tmp_path,
        """
        from torch import nn

        class Tiny(nn.Module):
            input_shape = (1, 6, 6)

            def __init__(self, num_classes=10, width=4):
                super().__init__()
                self.conv = nn.Conv2d(1, width, 3)
                self.fc = nn.Linear(width * 16, num_classes)

            def forward(self, x):
                return self.fc(self.conv(x).flatten(1))

        def helper():
            return 1
        """,
    )
    model, spec = create_model(f"{path}:Tiny?width=3", num_classes=2)
    assert (spec.kind, spec.name, spec.path) == ("file", "Tiny", str(path))
    assert model.conv.out_channels == 3 and model.fc.out_features == 2
    assert default_input_shape(spec) == (1, 1, 6, 6)
    assert ModelSpec.from_dict(spec.to_dict()).build().fc.out_features == 2


def test_file_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(ModelError, match="does not exist") as err:
        create_model(f"{tmp_path}/absent.py:Net")
    assert "absent.py" in str(err.value)

    path = write(
        tmp_path, "from torch import nn\nclass Net(nn.Module):\n    pass\ndef build():\n    return Net()\n"
    )
    with pytest.raises(ModelError) as err:
        create_model(f"{path}:Missing")
    assert (
        "'Missing' not found" in err.value.message and "Net" in err.value.hint and "build" in err.value.hint
    )

    path = write(tmp_path, "def boom(num_classes=10):\n    raise ValueError('depth must be 6n+2')\n")
    with pytest.raises(ModelError, match="depth must be 6n\\+2") as err:
        create_model(f"{path}:boom")
    assert err.value.location.file.endswith("my_model.py") and err.value.location.line == 2

    path = write(tmp_path, "x = 1\ndef Net(:\n    pass\n")
    with pytest.raises(ModelError, match="SyntaxError") as err:
        create_model(f"{path}:Net")
    assert err.value.location.line == 2 and err.value.location.column is not None

    path = write(tmp_path, "raise RuntimeError('broken at import')\n")
    with pytest.raises(ModelError, match="broken at import"):
        create_model(f"{path}:anything")

    path = write(tmp_path, "def not_a_model():\n    return 42\n")
    with pytest.raises(ModelError, match="not a torch.nn.Module"):
        create_model(f"{path}:not_a_model")


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(ModelError) as err:
        create_model("resnet20_cfar")
    assert "unknown model" in err.value.message and "resnet20_cifar" in err.value.hint
    assert isinstance(err.value, PruneCliError) and err.value.exit_code == 2


def test_wrong_keyword_arguments_list_accepted_ones() -> None:
    with pytest.raises(ModelError) as err:
        create_model("resnet20_cifar", depth=20)
    assert "bad keyword arguments" in err.value.message and "num_classes" in err.value.hint
    with pytest.raises(ModelError, match="bad keyword"):
        create_model("torchvision:resnet18?no_such_arg=1")


def test_non_plain_kwargs_cannot_be_saved() -> None:
    _, spec = create_model("prunecli.models.imagenet.mobilenet:MobileNet", min_channels=8)
    spec.kwargs["norm"] = torch.nn.BatchNorm2d
    with pytest.raises(ModelError, match="not plain data"):
        spec.to_dict()


def test_default_input_shape() -> None:
    assert default_input_shape("resnet56_cifar") == (1, 3, 32, 32)
    assert default_input_shape("simplenet_mnist") == (1, 1, 28, 28)
    assert default_input_shape("resnet18") == (1, 3, 224, 224)
    assert default_input_shape("inception_v3") == (1, 3, 299, 299)
    assert default_input_shape("resnet18", dataset="cifar10") == (1, 3, 32, 32)
    assert default_input_shape("resnet_digits", dataset="digits") == (1, 1, 8, 8)
    with pytest.raises(ModelError, match="input shape"):
        default_input_shape("prunecli.models.cifar.resnet:resnet20_cifar")


def test_available_models_lists_zoo_and_torchvision() -> None:
    names = available_models()
    assert {"resnet20_cifar", "vgg16_cifar", "mobilenet", "resnet_digits", "resnet50", "alexnet"} <= set(
        names
    )
    assert "fasterrcnn_resnet50_fpn" not in names
    assert "resnet18" not in available_models(include_torchvision=False)


def test_num_classes_for_a_factory_without_it(tmp_path) -> None:
    path = write(tmp_path, "from torch import nn\ndef Net():\n    return nn.Linear(4, 3)\n")
    model, _ = create_model(f"{path}:Net", dataset="cifar100")  # nothing asked explicitly: fine
    assert model.out_features == 3
    with pytest.raises(ModelError, match="takes no num_classes") as err:
        create_model(f"{path}:Net", num_classes=10)
    assert "add a num_classes parameter" in err.value.hint


def test_create_model_accepts_a_spec_object() -> None:
    _, spec = create_model("resnet20_cifar", num_classes=7)
    model, again = create_model(spec)
    assert model.fc.out_features == 7 and again == spec and again is not spec


def test_spec_strings_round_trip_values_of_every_type() -> None:
    spec = ModelSpec("zoo", "mobilenet", {"a": "true", "b": 3, "c": 0.5, "d": "text", "e": [1, 2], "f": None})
    assert parse_spec(spec.to_string()).kwargs == spec.kwargs
    with pytest.raises(ModelError) as err:
        parse_spec("models/net.py")
    assert "models/net.py:Factory" in err.value.hint
