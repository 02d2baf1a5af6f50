"""Where settings come from, and what a shortened run warns about."""

import os
import textwrap

import pytest

from prunecli.errors import ConfigError
from prunecli.schedule import load_schedule
from prunecli.training import resolve_run_config
from prunecli.training.setup import first_pruning_epoch, schedule_hints, unreachable_policies

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO, "schedules", "quickstart.yaml")


def test_quickstart_needs_no_other_argument():
    config, used = resolve_run_config(QUICKSTART, None, {})
    assert used is not None and used.name == "quickstart.yaml" and used.parent.name == "configs"
    assert (config.model, config.dataset) == ("resnet_digits", "digits")  # from the thinning extension
    assert config.epochs == 20 and config.schedule == QUICKSTART


def test_precedence_hints_then_file_then_command_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: resnet20_cifar\nepochs: 7\nlr: 0.3\n")
    config, used = resolve_run_config(QUICKSTART, str(cfg), {"lr": 0.01, "epochs": None})
    assert used == cfg
    assert config.model == "resnet20_cifar"  # the file beats the schedule's arch
    assert config.dataset == "digits"  # nothing overrides the schedule's dataset
    assert (config.epochs, config.lr) == (7, 0.01)  # None on the command line means "not given"


def test_missing_schedule_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        resolve_run_config(str(tmp_path / "nope.yaml"), None, {})
    assert "schedule file not found" in info.value.message


def test_distiller_example_hints(examples_dir):
    schedule = load_schedule(os.path.join(examples_dir, "agp-pruning", "resnet20_filters.schedule_agp.yaml"))
    assert schedule_hints(schedule) == {"model": "resnet20_cifar", "dataset": "cifar10"}
    assert first_pruning_epoch(schedule) == 0


def test_shortened_runs_list_the_policies_they_cut(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            version: 1
            pruners:
              early: {class: AutomatedGradualPruner, initial_sparsity: 0.1, final_sparsity: 0.5, weights: [a.weight]}
              late: {class: AutomatedGradualPruner, initial_sparsity: 0.1, final_sparsity: 0.5, weights: [b.weight]}
            lr_schedulers:
              lr: {class: StepLR, step_size: 10}
            policies:
              - pruner: {instance_name: early}
                starting_epoch: 0
                ending_epoch: 6
                frequency: 2
              - pruner: {instance_name: late}
                starting_epoch: 8
                ending_epoch: 10
                frequency: 1
              - lr_scheduler: {instance_name: lr}
                starting_epoch: 0
                ending_epoch: 100
                frequency: 1
            """
        )
    )
    schedule = load_schedule(str(path))
    assert unreachable_policies(schedule, 10) == []
    messages = unreachable_policies(schedule, 3)
    assert len(messages) == 2  # the LR policy is not listed
    assert "'early'" in messages[0] and "cut short" in messages[0] and "--epochs 5" in messages[0]
    assert "'late'" in messages[1] and "never fires" in messages[1] and "--epochs 10" in messages[1]


def test_fake_data_takes_the_models_input_size() -> None:
    """vit_b_16 only accepts 224x224 images; a CIFAR ResNet 32x32; an MNIST net one 28x28 channel."""
    from prunecli.training.setup import dataset_options_for_model

    assert dataset_options_for_model("fake", {}, "torchvision:vit_b_16") == {"image_size": [3, 224, 224]}
    assert dataset_options_for_model("fake", {"size": 8}, "resnet20_cifar") == {
        "size": 8,
        "image_size": [3, 32, 32],
    }
    assert dataset_options_for_model("fake", {}, "simplenet_mnist")["image_size"] == [1, 28, 28]
    assert dataset_options_for_model("fake", {"image_size": 64}, "torchvision:vit_b_16") == {"image_size": 64}
    assert dataset_options_for_model("cifar10", {}, "torchvision:vit_b_16") == {}  # real data sets decide
