"""The zoo against Distiller's own numbers: parameter names, shapes, counts and MACs.

Oracles are the sparsity tables and result notes in Distiller's example schedules (the
``examples_dir`` fixture), plus a few figures quoted there (resnet20_cifar 270,896 weights and
40,813,184 MACs; resnet56_cifar 851,504 and 125,747,840; vgg16_cifar 14,715,584 and ~313M).
Shapes are checked on the meta device, so even ImageNet models cost nothing to build.
"""

from __future__ import annotations

import functools
import os
import re

import pytest
import torch
import yaml
from torch import fx

from prunecli.models import ZOO, available_models, create_model, default_input_shape
from prunecli.report.compute import total_macs

# a sparsity-table row: "# |  3 | module.layer1.0.conv1.weight | (16, 16, 3, 3) |  2304 | ..."
ROW = re.compile(
    r"^#\s*\|\s*[\d.]+\s*\|\s*(?P<name>[\w.]+)\s*\|\s*\((?P<shape>[\d, ]+)\)\s*\|\s*(?P<nnz>\d+)"
)
TOTAL = re.compile(r"^#\s*\|\s*[\d.]+\s*\|\s*Total sparsity:\s*\|\s*-\s*\|\s*(?P<nnz>\d+)")
ARCH = re.compile(r"--arch[= ]+(?P<arch>[\w]+)")

# tables that describe the dense (unthinned) model: every shape must match exactly
KNOWN_DENSE = {
    "baseline_networks/cifar/resnet20_cifar_baseline_training.yaml": "resnet20_cifar",
    "baseline_networks/cifar/resnet56_cifar_baseline_training.yaml": "resnet56_cifar",
    "baseline_networks/cifar/vgg16_cifar_baseline_training.yaml": "vgg16_cifar",
    "baseline_networks/cifar/plain20_cifar_baseline_training.yaml": "plain20_cifar",
    "ssl/resnet20_cifar_baseline_training.yaml": "resnet20_cifar",
    "agp-pruning/mobilenet.imagenet.schedule_agp.yaml": "mobilenet",
    "agp-pruning/resnet18.schedule_agp.yaml": "resnet18",
    "agp-pruning/alexnet.schedule_agp.yaml": "alexnet",
    "agp-pruning/resnet50.schedule_agp.yaml": "resnet50",
}


def normalise(name: str) -> str:
    """Drop DataParallel's ``module.`` segment (``module.x`` and ``features.module.x``)."""
    return re.sub(r"(^|\.)module\.", r"\1", name)


@functools.cache
def meta_shapes(spec: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model, _ = create_model(spec)
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


def weight_count(shapes: dict[str, tuple[int, ...]]) -> int:
    """What Distiller's tables total: tensors of 2..4 dimensions (conv and linear weights)."""
    total = 0
    for shape in shapes.values():
        if 2 <= len(shape) <= 4:
            total += int(torch.Size(shape).numel())
    return total


def index_models(examples_dir: str) -> dict[str, str]:
    """path -> target model, from INDEX.md's ``model:`` column (first word, when it is a model)."""
    known = set(available_models())
    out = {}
    with open(os.path.join(examples_dir, "INDEX.md"), encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^- `(?P<path>[^`]+)`.*\| model: (?P<model>[\w]+)", line)
            if m and m["model"] in known:
                out[m["path"]] = m["model"]
    return out


def target_model(examples_dir: str, rel: str, text: str) -> str | None:
    m = ARCH.search(text)
    if m and m["arch"] in set(available_models()):
        return m["arch"]
    return index_models(examples_dir).get(rel)


def tables(text: str) -> list[tuple[list[tuple[str, tuple[int, ...], int]], int | None]]:
    """Every sparsity table in a file as (rows, total dense NNZ)."""
    found: list[tuple[list, int | None]] = []
    rows: list[tuple[str, tuple[int, ...], int]] = []
    for line in text.splitlines():
        if m := ROW.match(line):
            shape = tuple(int(d) for d in m["shape"].replace(" ", "").split(",") if d)
            rows.append((normalise(m["name"]), shape, int(m["nnz"])))
        elif (m := TOTAL.match(line)) and rows:
            found.append((rows, int(m["nnz"])))
            rows = []
    if rows:
        found.append((rows, None))
    return found


def example_files(examples_dir: str) -> list[str]:
    out = []
    for root, _, files in os.walk(examples_dir):
        for f in files:
            if f.endswith(".yaml"):
                out.append(os.path.relpath(os.path.join(root, f), examples_dir))
    return sorted(out)


# ---------------------------------------------------------------------------------------------


def test_headline_figures_from_distiller_schedules() -> None:
    cases = {
        "resnet20_cifar": (270_896, 40_813_184),
        "resnet56_cifar": (851_504, 125_747_840),
        "vgg16_cifar": (14_715_584, None),
    }
    for name, (weights, macs) in cases.items():
        model, spec = create_model(name)
        assert weight_count({n: tuple(p.shape) for n, p in model.named_parameters()}) == weights
        got = total_macs(model, torch.zeros(default_input_shape(spec)))
        if macs is not None:
            assert got == macs
        else:  # "We compressed the compute from 313M MACs" (ssl/vgg16_cifar_ssl_channels_training.yaml)
            assert round(got / 1e6) == 313
    # MobileNet v1 paper (Howard et al. 2017, table 8): 569 million mult-adds, 4.2 million parameters
    model, spec = create_model("mobilenet")
    assert round(total_macs(model, torch.zeros(default_input_shape(spec))) / 1e6) == 569
    assert round(sum(p.numel() for p in model.parameters()) / 1e5) == 42


def test_known_dense_tables_match_exactly(examples_dir: str) -> None:
    for rel, model in KNOWN_DENSE.items():
        with open(os.path.join(examples_dir, rel), encoding="utf-8") as f:
            found = tables(f.read())
        assert found, rel
        shapes = meta_shapes(model)
        rows, total = found[0]
        for name, shape, nnz in rows:
            assert shapes.get(name) == shape, (rel, name)
            assert torch.Size(shape).numel() == nnz
        table_names = {n for n, _, _ in rows}
        model_weights = {n for n, s in shapes.items() if 2 <= len(s) <= 4}
        assert table_names == model_weights, rel
        if total is not None:
            assert total == weight_count(shapes), rel


def test_every_table_names_exist_and_thinned_shapes_shrink(examples_dir: str) -> None:
    checked = 0
    for rel in example_files(examples_dir):
        with open(os.path.join(examples_dir, rel), encoding="utf-8") as f:
            text = f.read()
        found = tables(text)
        model = target_model(examples_dir, rel, text) if found else None
        if model is None:
            continue
        shapes = meta_shapes(model)
        for rows, total in found:
            dense = total == weight_count(shapes)
            for name, shape, _ in rows:
                assert name in shapes, (rel, name)
                ref = shapes[name]
                if dense:
                    assert shape == ref, (rel, name)
                else:  # a thinned model: same layers, never wider than the dense one
                    assert len(shape) == len(ref) and all(a <= b for a, b in zip(shape, ref)), (rel, name)
            checked += 1
    assert checked >= 40


def _schedule_names(node, out: list[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "weights":
                out.extend([value] if isinstance(value, str) else list(value or []))
            elif key in ("reg_regims", "sensitivities") and isinstance(value, dict):
                out.extend(k for k in value if k != "*")
            else:
                _schedule_names(value, out)
    elif isinstance(node, list):
        for item in node:
            _schedule_names(item, out)


def test_every_schedule_weight_name_exists_in_its_model(examples_dir: str) -> None:
    checked: dict[str, int] = {}
    for rel in example_files(examples_dir):
        with open(os.path.join(examples_dir, rel), encoding="utf-8") as f:
            text = f.read()
        model = target_model(examples_dir, rel, text)
        if model is None:
            continue
        data = yaml.safe_load(text)
        names: list[str] = []
        for section in ("pruners", "regularizers"):
            _schedule_names((data or {}).get(section), names)
        if not names:
            continue
        shapes = meta_shapes(model)
        missing = [n for n in names if normalise(n) not in shapes]
        assert not missing, (rel, model, missing)
        checked[rel] = len(names)
    # the CIFAR zoo schedules must be among those checked
    assert "agp-pruning/resnet20_filters.schedule_agp_4.yaml" in checked
    assert "pruning_filters_for_efficient_convnets/resnet56_cifar_filter_rank.yaml" in checked
    assert "agp-pruning/mobilenet.imagenet.schedule_agp.yaml" in checked
    assert sum(checked.values()) > 200


#: zoo families that are image classifiers (language and detection models have their own tests)
CLASSIFIER_FAMILIES = {"digits", "mnist", "cifar", "imagenet"}


@pytest.mark.parametrize("name", sorted(n for n, e in ZOO.items() if e.family in CLASSIFIER_FAMILIES))
def test_every_zoo_model_runs_on_its_input_and_traces(name: str) -> None:
    with torch.device("meta"):
        model, spec = create_model(name)
        model.eval()
        out = model(torch.zeros(default_input_shape(spec)))
    classes = 1000 if ZOO[name].family == "imagenet" else 10
    assert tuple(out.shape) == (1, classes)
    fx.symbolic_trace(model)  # the dependency graph needs every zoo model to trace


def test_resnet_block_names_are_distillers() -> None:
    model, _ = create_model("resnet20_cifar")
    modules = dict(model.named_modules())
    for n in ("conv1", "bn1", "relu", "layer1", "layer3", "avgpool", "fc"):
        assert n in modules
    block = modules["layer2.0"]
    assert [n for n, _ in block.named_children()] == [
        "conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "downsample", "residual_eltwiseadd",
    ]  # fmt: skip
    assert isinstance(modules["layer2.0.downsample.0"], torch.nn.Conv2d)
    assert modules["layer2.0.downsample.0"].kernel_size == (1, 1)
    assert isinstance(modules["layer2.0.downsample.1"], torch.nn.BatchNorm2d)
    assert modules["layer1.0"].downsample is None


def test_vgg_features_are_flat_with_distiller_indices() -> None:
    shapes = meta_shapes("vgg16_cifar")
    convs = [n for n in shapes if n.startswith("features.") and n.endswith(".weight")]
    # conv layers sit at these indices of the flat Sequential (conv, relu, [pool])
    assert [int(n.split(".")[1]) for n in convs] == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert shapes["classifier.weight"] == (10, 512)
    bn = meta_shapes("vgg16_bn_cifar")
    assert bn["features.1.weight"] == (64,) and bn["features.3.weight"] == (64, 64, 3, 3)


def test_preact_and_plain_distiller_names() -> None:
    pre = meta_shapes("preact_resnet20_cifar")
    assert {"layer1.0.pre_bn.weight", "layer1.0.bn.weight", "final_bn.weight"} <= set(pre)
    with torch.device("meta"):
        block = create_model("preact_resnet20_cifar")[0].layer1[0]
    assert [n for n, _ in block.named_children()] == ["pre_bn", "pre_relu", "conv1", "bn", "relu", "conv2"]
    assert not any("downsample" in n for n in pre)  # parameter-free shortcut by default
    pre_ds = meta_shapes("preact_resnet20_cifar_conv_ds")
    assert pre_ds["layer2.0.downsample.weight"] == (32, 16, 1, 1)
    imnet = meta_shapes("preact_resnet50")
    assert "layer1.0.pre_bn.weight" not in imnet and "layer2.0.pre_bn.weight" in imnet
    assert imnet["layer1.0.conv3.weight"] == (256, 64, 1, 1)
    assert imnet["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert imnet["fc.weight"] == (1000, 2048)
    # same convolutions as torchvision's resnet (Distiller's notes: 25,502,912 weights)
    assert weight_count(imnet) == 25_502_912 == weight_count(meta_shapes("resnet50"))
    plain = meta_shapes("plain20_cifar")
    assert weight_count(plain) == 268_336 and not any("downsample" in n for n in plain)


def test_mobilenet_widths() -> None:
    full = meta_shapes("mobilenet")
    assert full["model.0.0.weight"] == (32, 3, 3, 3) and full["model.13.3.weight"] == (1024, 1024, 1, 1)
    half = meta_shapes("mobilenet_050")
    assert half["model.0.0.weight"] == (16, 3, 3, 3) and half["fc.weight"] == (1000, 512)
    quarter = meta_shapes("mobilenet_025")
    assert quarter["model.0.0.weight"] == (8, 3, 3, 3)  # floor(32 * 0.25) = 8 = min_channels


def test_alexnet_bn_layout() -> None:
    s = meta_shapes("alexnet_bn")
    assert s["features.0.weight"] == (96, 3, 12, 12) and "features.0.bias" in s
    assert s["features.2.weight"] == (256, 48, 5, 5)  # groups=2
    assert "features.2.bias" not in s
    assert s["classifier.0.weight"] == (4096, 9216) and s["classifier.6.weight"] == (1000, 4096)


def test_digits_model_is_small_and_shares_resnet_names() -> None:
    model, spec = create_model("resnet_digits")
    n_params = sum(p.numel() for p in model.parameters())
    assert 50_000 <= n_params <= 100_000
    assert default_input_shape(spec) == (1, 1, 8, 8)
    names = {n for n, _ in model.named_parameters()}
    assert {"conv1.weight", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight", "fc.weight"} <= names
    assert model.conv1.out_channels == 32
    out = model(torch.randn(4, 1, 8, 8))
    assert out.shape == (4, 10)


@pytest.mark.slow
def test_resnet50_macs_match_distiller_notes() -> None:
    # agp-pruning/resnet50.schedule_agp.filters.yaml: "MACs ... of 4,089,184,256"
    for name in ("resnet50", "preact_resnet50"):
        model, spec = create_model(name)
        assert total_macs(model, torch.zeros(default_input_shape(spec))) == 4_089_184_256


@functools.cache
def meta_modules(spec: str) -> frozenset[str]:
    with torch.device("meta"):
        model, _ = create_model(spec)
    return frozenset(n for n, _ in model.named_modules())


def test_quantizer_override_module_names_exist_in_zoo_models(examples_dir: str) -> None:
    """Module names (not only parameters) matter too: Distiller's quantizer overrides name them."""
    checked = 0
    for rel in example_files(examples_dir):
        with open(os.path.join(examples_dir, rel), encoding="utf-8") as f:
            text = f.read()
        model = target_model(examples_dir, rel, text)
        if model is None or model not in ZOO:
            continue
        data = yaml.safe_load(text) or {}
        for quantizer in (data.get("quantizers") or {}).values():
            for key in quantizer.get("overrides") or {}:
                if re.fullmatch(r"[\w.]+", key):  # plain names; regex patterns are skipped
                    assert key in meta_modules(model), (rel, key)
                    checked += 1
    assert checked >= 10


def test_resnext101_32x4d_is_torchvisions_resnext_under_distillers_names() -> None:
    """Same output as the torchvision ResNet its layers come from; Distiller's paths and widths."""
    from prunecli.models.imagenet.resnext import ResNeXtDistiller, torchvision_resnext101_32x4d

    torch.manual_seed(0)
    reference = torchvision_resnext101_32x4d(num_classes=10).eval()
    model = ResNeXtDistiller(reference).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    shapes = meta_shapes("resnext101_32x4d")
    # 32 groups of width 4 in the first stage, 32 x 32 in the last; 44.18 M parameters in all
    assert shapes["features.4.0.0.0.0.3.weight"] == (128, 4, 3, 3)
    assert shapes["features.7.2.0.0.0.3.weight"] == (1024, 32, 3, 3)
    assert shapes["features.4.0.0.1.0.weight"] == (256, 64, 1, 1)
    assert "features.4.1.0.1.0.weight" not in shapes  # identity shortcut
    assert shapes["last_linear.weight"] == (1000, 2048)
    assert sum(torch.Size(s).numel() for s in shapes.values()) == 44_177_704
    # the dense total of the sparsity table in agp-pruning/prune_resnext101_fine75.yaml
    assert weight_count(shapes) == 44_038_848
