"""``prunecli convert``: Distiller -> native -> Distiller gives the same masks; what cannot be said is listed.

The round trip runs real Distiller examples through scripts/runtime_sweep.py (the harness of
tests/test_examples_runtime.py) and compares every mask of the run, step by step, with the
fingerprints recorded for the original file in tests/data/mask_fingerprints.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from prunecli.api import convert_schedule
from prunecli.cli.main import cli
from tests.support.nni import CASES, prunecli_masks
from tests.support.sweep import runtime_sweep

REPO = Path(__file__).resolve().parents[1]
FINGERPRINTS = json.loads((REPO / "tests" / "data" / "mask_fingerprints.json").read_text())

#: examples the engine expresses bit for bit (L1-ranked filters, AGP, L1-ranked AGP filters), cheap to run
ROUND_TRIP = [
    "pruning_filters_for_efficient_convnets/resnet56_cifar_filter_rank.yaml",
    "agp-pruning/resnet20_filters.schedule_agp_2.yaml",
    "agp-pruning/word_lang_model.schedule_agp.yaml",
]


def _run_text(tmp: Path, rel: str, text: str) -> dict:
    """Run ``text`` as if it were the example ``rel`` (same model, data and seed)."""
    path = tmp / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    outcome, _ = runtime_sweep().run_schedule(path, tmp)
    assert outcome.status == "ok", outcome.reason
    return outcome.masks


def _pruner_classes(text: str) -> dict[str, dict]:
    return yaml.safe_load(text).get("pruners", {})


@pytest.mark.parametrize("rel", ROUND_TRIP)
def test_distiller_native_distiller_round_trip_keeps_the_masks(
    examples_dir: str, rel: str, tmp_path: Path
) -> None:
    recorded = FINGERPRINTS[rel]
    native = convert_schedule(Path(examples_dir) / rel, "native")
    assert native.lost == [] and native.notes == []
    assert all("class" not in spec for spec in _pruner_classes(native.text).values())
    native_masks = _run_text(tmp_path / "native", rel, native.text)
    native_path = tmp_path / "native.yaml"
    native_path.write_text(native.text)
    back = convert_schedule(native_path, "distiller")
    assert back.lost == []
    original = yaml.safe_load((Path(examples_dir) / rel).read_text())
    assert {n: s["class"] for n, s in _pruner_classes(back.text).items()} == {
        n: s["class"].strip() for n, s in original["pruners"].items()
    }
    back_masks = _run_text(tmp_path / "back", rel, back.text)
    for masks in (native_masks, back_masks):
        assert masks["version"] == recorded["version"]
        assert masks["final"] == recorded["final"]
        assert masks["steps"] == recorded["steps"]


def test_what_distiller_cannot_say_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text(
        "version: 1\npruners:\n"
        "  a: {preset: FPGMPruner, sparsity: 0.5, weights: [conv1.weight]}\n"
        "  b: {target: filters, metric: l1, sparsity: 0.5, weights: [conv2.weight]}\n"
        "policies:\n  - {pruner: {instance_name: a}, epochs: [0]}\n  - {pruner: {instance_name: b}, epochs: [0]}\n"
    )
    conv = convert_schedule(path, "distiller")
    [lost] = conv.lost
    assert "pruners.a" in lost.message and "metric fpgm" in lost.message and lost.location.line == 3
    doc = yaml.safe_load(conv.text)
    assert doc["pruners"] == {
        "b": {
            "class": "L1RankedStructureParameterPruner",
            "group_type": "Filters",
            "desired_sparsity": 0.5,
            "weights": ["conv2.weight"],
        }
    }
    assert doc["policies"] == [{"pruner": {"instance_name": "b"}, "epochs": [0]}]
    result = CliRunner().invoke(cli, ["convert", str(path), "--to", "distiller", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["target"] == "distiller" and data["source_dialect"] == "distiller"
    assert [p["line"] for p in data["lost"]] == [3]


def test_nni_target_lists_everything_a_config_list_cannot_hold(examples_dir: str) -> None:
    rel = "agp-pruning/resnet20_filters.schedule_agp_2.yaml"
    conv = convert_schedule(Path(examples_dir) / rel, "nni")
    doc = yaml.safe_load(conv.text)
    # the L1-ranked AGP filter pruner is NNI's AGPPruner with out_channel granularity; its 10 epochs
    # (0, 2, ..., 18) are the ramp's start and 9 steps every 2 epochs; DataParallel's 'module.' dropped
    assert doc["pruner"] == "AGPPruner" and doc["total_times"] == 9 and doc["interval_epochs"] == 2
    assert doc["config_list"] == [
        {
            "op_names": [f"layer{i}.{j}.conv1" for i in (1, 2) for j in range(3)],
            "sparse_ratio": 0.4,
            "granularity": "out_channel",
        }
    ]
    lost = " | ".join(p.message for p in conv.lost)
    for part in (
        "extensions.net_thinner",
        "lr_schedulers.pruning_lr",
        "initial=0.1",
        "pruners.fine_pruner: its epochs",
    ):
        assert part in lost


def test_nni_config_list_converts_with_a_model_and_keeps_its_masks(tmp_path: Path) -> None:
    """NNI -> native and NNI -> NNI on the oracle model: the same masks as the source."""
    spec = json.loads(CASES.read_text())["l1_v2_partial_exclude"]
    source = tmp_path / "nni.json"
    source.write_text(json.dumps(spec["config_list"]))
    with pytest.raises(Exception, match="needs the model"):
        convert_schedule(source, "native", pruner=spec["pruner"])
    model = "tests/support/nni.py:oracle_model"
    expected = prunecli_masks(source.read_text(), "nni.json", pruner=spec["pruner"])
    for target in ("native", "nni"):
        conv = convert_schedule(source, target, model=model, pruner=spec["pruner"])
        assert conv.lost == []
        got = prunecli_masks(conv.text, f"converted.{target}.yaml")
        assert got.keys() == expected.keys()
        assert all((got[n] == expected[n]).all() for n in got)
    assert yaml.safe_load(conv.text)["config_list"] == [
        {"op_names": ["conv2", "conv3"], "sparse_ratio": 0.25}
    ]


def test_nni_round_trip_keeps_granularity_and_dependency_groups(tmp_path: Path) -> None:
    text = (
        "pruner: L1NormPruner\nconfig_list:\n"
        "  - {op_types: [Conv2d], sparse_ratio: 0.5, dependency_group_id: 1}\n"
        "  - {op_names: [fc1], sparse_ratio: 0.25, granularity: in_channel}\n"
    )
    source = tmp_path / "nni.yaml"
    source.write_text(text)
    conv = convert_schedule(source, "nni", model="tests/support/nni.py:oracle_model")
    assert conv.lost == []
    entries = yaml.safe_load(conv.text)["config_list"]
    assert entries[0]["dependency_group_id"] == "entry_1" and entries[1]["granularity"] == "in_channel"
    expected = prunecli_masks(text, "nni.yaml")
    got = prunecli_masks(conv.text, "back.yaml")
    assert got.keys() == expected.keys() and got
    assert all((got[n] == expected[n]).all() for n in got)
