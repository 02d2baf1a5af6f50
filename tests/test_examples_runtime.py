"""Distiller's example schedules, unchanged, through the compression runtime (scripts/runtime_sweep.py).

Every example file has an expected outcome here: skipped (with the reason), or run on its target
model with one tiny batch per epoch. A run must last exactly through the last epoch of its last
pruner, regularizer or extension (computed here from the raw YAML), and every pruner with a
predictable result must end at the sparsity its YAML asks for. Where a comment in the file gives
Distiller's parameter count after thinning, the thinned model must have exactly that many weights.
Every mask the run produces must be bit-identical to the fingerprints recorded in
tests/data/mask_fingerprints.json (regenerate with ``scripts/runtime_sweep.py --fingerprints``
only when a change of masks is intended); entries recorded with an older digest format (no
``version``) are refreshed by that command and compared once they carry the current one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from tests.support.sweep import runtime_sweep

REPO = Path(__file__).resolve().parents[1]

NOT_A_SCHEDULE = "not a schedule"

#: example -> the start of the reason it is not run
SKIPPED: dict[str, str] = {
    **{
        rel: NOT_A_SCHEDULE
        for rel in (
            "GNMT/acts_quantization_stats.yaml",
            "auto_compression/amc/auto_compression_channels.yaml",
            "auto_compression/amc/auto_compression_filters.yaml",
            "ncf/quantization_stats_no_split.yaml",
            "ncf/quantization_stats_split.yaml",
            "quantization/post_train_quant/stats/resnet18_quant_stats.yaml",
            "quantization/post_train_quant/stats/resnet50_quant_stats.yaml",
            "word_language_model/acts_quantization_stats.yaml",
        )
    },
}

#: examples cheap enough for the default suite (a few seconds each)
FAST: set[str] = {
    "agp-pruning/word_lang_model.schedule_agp.yaml",
    "baidu-rnn-pruning/word_lang_model.schedule_baidu_rnn.yaml",
    "pruning_filters_for_efficient_convnets/resnet56_cifar_filter_rank.yaml",
    "pruning_filters_for_efficient_convnets/resnet56_cifar_filter_rank_v2.yaml",
    "pruning_filters_for_efficient_convnets/resnet56_cifar_channel_rank.yaml",
    "ssl/resnet20_cifar_baseline_training.yaml",
    "network_slimming/resnet20_slimming.yaml",
    "agp-pruning/resnet20_filters.schedule_agp_2.yaml",
}

#: examples whose full run takes minutes of CPU (ResNeXt-101, Mask R-CNN over 46-80 epochs):
#: their outcome and mask fingerprints are recorded by scripts/runtime_sweep.py, and they run
#: here only when PRUNECLI_HEAVY_EXAMPLES=1 (cheaper tests cover those models)
HEAVY: set[str] = {
    "agp-pruning/prune_resnext101_fine75.yaml",
    "object_detection_compression/maskrcnn.scheduler_agp.yaml",
    "object_detection_compression/maskrcnn.scheduler_agp.non_parallel.yaml",
}
HEAVY_ENV = "PRUNECLI_HEAVY_EXAMPLES"

#: examples that prune filters of residual-coupled tensors without a Leader group: the coupled
#: tensors lose different filters, so those zero filters must stay (``prunecli validate`` warns)
PRUNED_APART: set[str] = {
    f"agp-pruning/resnet20_filters.{rel}.yaml"
    for rel in ("schedule_agp", "bn_fold.schedule_agp", "schedule_agp_3", "schedule_agp_4")
}

#: Distiller's weight count (conv and fc weights, nonzero) after the run, from the files' comments
DISTILLER_PARAMS: dict[str, int] = {
    "pruning_filters_for_efficient_convnets/resnet56_cifar_filter_rank.yaml": 634_640,
    "pruning_filters_for_efficient_convnets/resnet56_cifar_filter_rank_v2.yaml": 570_704,
    "pruning_filters_for_efficient_convnets/resnet56_cifar_channel_rank.yaml": 566_887,
    "network_trimming/resnet56_cifar_activation_apoz.yaml": 634_640,
    "network_trimming/resnet56_cifar_activation_apoz_v2.yaml": 570_704,
    "agp-pruning/resnet20_filters.schedule_agp_2.yaml": 143_488,
}


FINGERPRINTS = REPO / "tests" / "data" / "mask_fingerprints.json"


def _fingerprints() -> dict:
    return json.loads(FINGERPRINTS.read_text(encoding="utf-8"))


def _sweep():
    return runtime_sweep()


def _runnable() -> list[str]:
    root = Path(os.environ.get("PRUNECLI_EXAMPLES", REPO.parent / "shared" / "distiller-examples"))
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.yaml")) if root.is_dir() else []
    return [n for n in names if n not in SKIPPED]


def _param(rel: str):
    marks = []
    if rel not in FAST:
        marks.append(pytest.mark.slow)
    if rel in HEAVY and os.environ.get(HEAVY_ENV) != "1":
        marks.append(pytest.mark.skip(reason=f"minutes of CPU; set {HEAVY_ENV}=1 to run it"))
    return pytest.param(rel, marks=marks, id=rel)


def _last_epoch(raw: dict) -> int:
    """Last epoch of any pruner, regularizer or extension policy, from the raw YAML with Distiller's
    range semantics (a quantizer rounds alike on every epoch of its range: one epoch runs it)."""
    last = -1
    for entry in raw.get("policies") or []:
        if "lr_scheduler" in entry or "quantizer" in entry:
            continue
        if "epochs" in entry:
            last = max(last, max(entry["epochs"]))
        else:
            start, end, freq = entry["starting_epoch"], entry["ending_epoch"], entry["frequency"]
            last = max(last, start + ((end - 1 - start) // freq) * freq)
    return last


def _raw(examples_dir: str, rel: str) -> dict:
    return yaml.safe_load((Path(examples_dir) / rel).read_text())


def test_every_example_has_an_expectation(examples_dir: str) -> None:
    files = {p.relative_to(examples_dir).as_posix() for p in Path(examples_dir).rglob("*.yaml")}
    assert len(files) == 85
    assert set(SKIPPED) | FAST | PRUNED_APART | HEAVY <= files
    assert set(_runnable()) == files - set(SKIPPED)
    assert set(_fingerprints()) == set(_runnable())
    current = _sweep().FINGERPRINT_VERSION
    assert all(_fingerprints()[rel].get("version") == current for rel in FAST)


@pytest.mark.parametrize("rel", sorted(SKIPPED))
def test_skipped_examples_say_why(examples_dir: str, rel: str) -> None:
    outcome = _sweep().run_example(Path(examples_dir) / rel, examples_dir)
    assert outcome.status == "skipped"
    assert outcome.reason.startswith(SKIPPED[rel]), outcome.reason
    assert outcome.epochs == 0


@pytest.mark.parametrize("rel", [_param(rel) for rel in _runnable()])
def test_example_runs_to_its_targets(examples_dir: str, rel: str) -> None:
    outcome, model = _sweep().run_schedule(Path(examples_dir) / rel, examples_dir)
    assert outcome.status == "ok", outcome.reason
    recorded = _fingerprints()[rel]
    if recorded.get("version") == outcome.masks["version"]:  # recorded with this digest format
        assert outcome.masks["final"] == recorded["final"], "final masks differ from the recorded ones"
        assert outcome.masks["steps"] == recorded["steps"], "masks differ from the recorded ones during the run"
    raw = _raw(examples_dir, rel)
    assert outcome.epochs == max(_last_epoch(raw) + 1, 1)
    pruners = raw.get("pruners") or {}
    assert {p.name for p in outcome.pruners} == {
        p["pruner"]["instance_name"] for p in raw.get("policies") or [] if "pruner" in p
    }
    for result in outcome.pruners:
        spec = pruners[result.name]
        target = spec.get("final_sparsity", spec.get("desired_sparsity"))
        if result.check == "record":
            assert "final_sparsity" not in spec or "Bernoulli" in result.class_name, result
            continue
        assert result.target == pytest.approx(target), result
        if result.check == "element":
            assert result.reached == pytest.approx(target, abs=1e-3), result
        else:  # within one structure of the target (16 is the fewest filters of these models)
            assert target - 1 / 16 - 1e-9 <= result.reached_structures <= target + 1e-9, result
        assert result.ok, result.detail
    for result in outcome.thinning:
        assert result.thinnings >= 1
        assert result.removed_structures + result.kept_coupled == result.zero_structures, result.detail
        assert bool(result.kept_coupled) == (rel in PRUNED_APART), result
    if rel in DISTILLER_PARAMS:
        weights = sum(int(p.count_nonzero()) for p in model.parameters() if p.dim() > 1)
        assert weights == DISTILLER_PARAMS[rel]


def test_thinning_with_the_previous_step_graph_alive() -> None:
    """A training loop that still holds the last step's loss when thinning runs must keep working."""
    from prunecli.compression import build_scheduler
    from prunecli.models import create_model
    from prunecli.schedule import load_schedule
    from prunecli.schedule.names import resolve_names

    text = """
version: 1
pruners:
  p: {class: L1RankedStructureParameterPruner, group_type: Filters, desired_sparsity: 0.5,
      weights: [layer1.0.conv1.weight]}
extensions:
  t: {class: FilterRemover, thinning_func_str: remove_filters, arch: resnet20_cifar, dataset: cifar10}
policies:
  - {pruner: {instance_name: p}, epochs: [0]}
  - {extension: {instance_name: t}, epochs: [0]}
"""
    torch.manual_seed(0)
    model, _ = create_model("resnet20_cifar", dataset="cifar10")
    schedule = resolve_names(
        load_schedule("inline.yaml", text=text), {n: tuple(p.shape) for n, p in model.named_parameters()}
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = build_scheduler(schedule, model, optimizer, example_input=torch.randn(1, 3, 32, 32))
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    model.eval()  # BatchNorm statistics stay untouched, so the zero filters carry exact zeros
    loss = torch.nn.functional.cross_entropy(model(x), y)  # an earlier step whose graph stays alive
    loss.backward()
    model.train()
    scheduler.on_epoch_begin(0, optimizer)
    scheduler.on_minibatch_begin(0, 0, 1, optimizer)
    assert model.layer1[0].conv1.weight.shape[0] == 8
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    assert model.layer1[0].conv1.weight.grad.shape == (8, 16, 3, 3)
