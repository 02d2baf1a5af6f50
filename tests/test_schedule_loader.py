"""Loading real Distiller schedules and the catalog behind the checks."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from prunecli.errors import ScheduleError
from prunecli.schedule import NotAScheduleError, agp_target, load_schedule, plan
from prunecli.schedule.catalog import QUANTIZER_NAMES, catalog

STATS_FILES = {
    "GNMT/acts_quantization_stats.yaml",
    "ncf/quantization_stats_no_split.yaml",
    "ncf/quantization_stats_split.yaml",
    "quantization/post_train_quant/stats/resnet18_quant_stats.yaml",
    "quantization/post_train_quant/stats/resnet50_quant_stats.yaml",
    "word_language_model/acts_quantization_stats.yaml",
}
AMC_FILES = {
    "auto_compression/amc/auto_compression_channels.yaml",
    "auto_compression/amc/auto_compression_filters.yaml",
}
#: The one example with duplicated reg_regims keys: valid, the last value kept (as in Distiller), warned.
DUPLICATE_KEY_FILES = {"ssl/ssl_channels-removal_training.yaml"}


def _examples(root: str) -> list[Path]:
    return sorted(Path(root).rglob("*.yaml"))


def test_every_example_validates_or_is_classified(examples_dir: str) -> None:
    files = _examples(examples_dir)
    assert len(files) == 85
    valid = 0
    for path in files:
        rel = path.relative_to(examples_dir).as_posix()
        raw = yaml.safe_load(path.read_text())  # independent reading of the top-level keys
        try:
            schedule = load_schedule(path)
        except NotAScheduleError as exc:
            expected = "amc-network" if rel in AMC_FILES else "activation-statistics"
            assert rel in STATS_FILES | AMC_FILES, rel
            assert exc.classification == expected
            continue
        valid += 1
        assert rel not in STATS_FILES | AMC_FILES
        assert bool(schedule.warnings) == (rel in DUPLICATE_KEY_FILES), rel
        if rel in DUPLICATE_KEY_FILES:
            with pytest.raises(ScheduleError, match="duplicate key"):
                load_schedule(path, strict=True)
        # Distiller's post-training quantization files have no policies: applied after training
        assert len(schedule.policies) == len(raw.get("policies") or [])
        # a policy's class is the one named in the file
        for policy in schedule.policies:
            section = {
                "pruner": "pruners",
                "regularizer": "regularizers",
                "extension": "extensions",
                "quantizer": "quantizers",
            }.get(
                policy.kind, "lr_schedulers"
            )
            assert (
                schedule.component(policy.kind, policy.instance).class_name
                == raw[section][policy.instance]["class"]
            )
    assert valid == 85 - len(STATS_FILES) - len(AMC_FILES)  # the 8 quantization examples included


def test_resnet20_filters_agp_targets_match_the_notes(examples_dir: str) -> None:
    """0.10 -> 0.50 over epochs 0..30 step 2: span 28, epoch 14 -> 0.5 - 0.4 * 0.5**3 = 0.45."""
    schedule = load_schedule(Path(examples_dir) / "agp-pruning/resnet20_filters.schedule_agp.yaml")
    low = next(p for p in schedule.policies if p.instance == "low_pruner")
    assert low.epochs == tuple(range(0, 30, 2))
    assert (low.starting_epoch, low.ending_epoch, low.frequency) == (0, 30, 2)
    assert agp_target(0.10, 0.50, 14, 0, 30, 2) == pytest.approx(0.45)
    plans = plan(schedule)
    assert len(plans) == 49  # the last pruning epoch is 48 (30..50 step 2)
    assert plans[14].targets["low_pruner"] == pytest.approx(0.45)
    assert plans[28].targets["low_pruner"] == 0.50
    # epoch 30: thinning (declared before the epoch-30 pruners) runs before them, LR last
    order = [(e.kind, e.instance) for e in plans[30].entries]
    assert order == [
        ("extension", "net_thinner"),
        ("pruner", "fine_pruner"),
        ("pruner", "fc_pruner"),
        ("lr_scheduler", "pruning_lr"),
    ]


def test_scalar_weights_become_a_list(examples_dir: str) -> None:
    schedule = load_schedule(Path(examples_dir) / "agp-pruning/resnet50.schedule_agp.yaml")
    assert schedule.components["pruners"]["fc_pruner"].args["weights"] == ["module.fc.weight"]


def test_lr_policies_run_last_even_when_declared_first(examples_dir: str) -> None:
    schedule = load_schedule(Path(examples_dir) / "ssl/ssl_filter-removal_training.yaml")
    assert schedule.policies[0].kind == "lr_scheduler"
    epoch = plan(schedule, 50)[45]
    kinds = [e.kind for e in epoch.entries]
    assert kinds[-1] == "lr_scheduler" and "regularizer" in kinds


def test_text_argument_and_locations() -> None:
    text = "lr_schedulers:\n  lr:\n    class: StepLR\n    step_size: 3\npolicies:\n  - lr_scheduler:\n      instance_name: lr\n    epochs: [0, 1]\n"
    schedule = load_schedule("inline.yaml", text=text)
    comp = schedule.components["lr_schedulers"]["lr"]
    assert comp.arg_locations["step_size"].line == 4
    assert schedule.policies[0].location.line == 6
    assert schedule.policies[0].frequency is None
    assert (schedule.policies[0].starting_epoch, schedule.policies[0].ending_epoch) == (0, 2)


def test_all_problems_are_reported_together() -> None:
    text = (
        "pruners:\n  a:\n    class: AutomatedGradualPrunr\n  b:\n    class: SensitivityPruner\n    sensitivity: {}\n"
        "policies:\n  - pruner: {instance_name: c}\n    starting_epoch: 0\n    ending_epoch: 0\n    frequency: 1\n"
    )
    with pytest.raises(ScheduleError) as info:
        load_schedule("many.yaml", text=text)
    lines = sorted(p.location.line for p in info.value.problems)
    assert lines == [3, 4, 6, 8, 10]  # unknown class, missing + unknown argument, no such pruner, range


def test_catalog_covers_distiller_classes() -> None:
    import torch.optim.lr_scheduler as lrs

    table = catalog()
    for name in [
        "AutomatedGradualPruner",
        "L1RankedStructureParameterPruner_AGP",
        "L2RankedStructureParameterPruner",
        "ActivationAPoZRankedFilterPruner_AGP",
        "ActivationMeanRankedFilterPruner",
        "GradientRankedFilterPruner_AGP",
        "RandomRankedFilterPruner",
        "BernoulliFilterPruner_AGP",
        "RandomLevelStructureParameterPruner",
        "StructureParameterPruner",
        "SplicingPruner",
        "BaiduRNNPruner",
        "SensitivityPruner",
        "MagnitudeParameterPruner",
        "SparsityLevelParameterPruner",
        "FMReconstructionChannelPruner",
        "L1Regularizer",
        "GroupLassoRegularizer",
        "GroupVarianceRegularizer",
        "StructureRemover",
        "FilterRemover",
        "ChannelRemover",
        "MultiStepMultiGammaLR",
        *QUANTIZER_NAMES,
    ]:
        assert name in table, name
    assert table["FMReconstructionChannelPruner"].unsupported
    # every torch scheduler is known by name with its real argument names
    for name in (
        "StepLR",
        "MultiStepLR",
        "ExponentialLR",
        "CosineAnnealingLR",
        "ReduceLROnPlateau",
        "OneCycleLR",
    ):
        params = inspect.signature(getattr(lrs, name).__init__).parameters
        expected = {p for p in params if p not in ("self", "optimizer", "last_epoch", "verbose")}
        assert set(table[name].schema["properties"]) <= expected
        assert expected - set(table[name].schema["properties"]) <= {"scale_fn"}
    # Distiller's PolynomialLR shadows torch's
    assert set(table["PolynomialLR"].schema["required"]) == {"t_max", "power"}


def test_not_a_schedule_is_one_line(tmp_path) -> None:
    f = tmp_path / "stats.yaml"
    f.write_text("conv1:\n  output:\n    min: -1.0\n    max: 2.0\n    avg_min: -0.5\n    avg_max: 1.5\n")
    with pytest.raises(NotAScheduleError) as info:
        load_schedule(f)
    assert info.value.classification == "activation-statistics"
    assert "\n" not in info.value.render()
