"""Run configuration: located errors, overrides, precedence."""

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prunecli.errors import ConfigError, PruneCliError
from prunecli.training.config import RunConfig, load_config, merge_config, parse_set_options


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_config_overrides_defaults_and_resolves_schedule_path(tmp_path):
    path = write(
        tmp_path, "model: resnet_digits\nepochs: 3\nlr: 0.01\nschedule: s/q.yaml\noptimizer: adamw\n"
    )
    config = load_config(path)
    assert (config.model, config.epochs, config.lr, config.optimizer) == ("resnet_digits", 3, 0.01, "adamw")
    assert config.batch_size == RunConfig().batch_size
    assert config.schedule == str(tmp_path / "s" / "q.yaml")


def test_every_problem_is_reported_with_line_and_column(tmp_path):
    path = write(tmp_path, "model: resnet_digits\nepochs: ten\nbatchsize: 4\ndevice: gpu\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    rendered = info.value.render()
    assert len(info.value.problems) == 3
    assert f"{path}:2:9" in rendered  # the value 'ten'
    assert f"{path}:3:1" in rendered and "did you mean 'batch_size'?" in rendered
    assert f"{path}:4:9" in rendered and "cpu, cuda, auto" in rendered


def test_optimizer_args_are_checked_against_the_torch_signature(tmp_path):
    path = write(tmp_path, "optimizer: sgd\noptimizer_args:\n  betas: [0.9, 0.99]\n  lr: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    messages = [p.message for p in info.value.problems]
    assert any("SGD has no argument 'betas'" in m for m in messages)
    assert any("optimizer_args.lr" in m for m in messages)
    assert info.value.problems[0].location.line == 3


def test_adam_accepts_betas(tmp_path):
    config = load_config(
        write(tmp_path, "optimizer: adam\noptimizer_args: {betas: [0.8, 0.9], amsgrad: true}\n")
    )
    assert config.optimizer_args == {"betas": [0.8, 0.9], "amsgrad": True}


def test_yaml_syntax_errors_and_missing_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "epochs: [1,\n"))
    assert info.value.location is not None and info.value.location.line is not None
    with pytest.raises(ConfigError):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, "epochs: 1\nepochs: 2\n"))  # duplicate keys refused


def test_set_options_parse_yaml_values_and_nested_keys():
    parsed = parse_set_options(["epochs=3", "lr=1e-3", "quiet=true", "dataset_options.size=64", "name=x"])
    assert parsed == {"epochs": 3, "lr": 1e-3, "quiet": True, "dataset_options": {"size": 64}, "name": "x"}
    with pytest.raises(ConfigError):
        parse_set_options(["epochs"])


def test_merge_later_layers_win_and_bad_values_name_the_command_line():
    config = merge_config({"model": "a", "epochs": 2}, {"epochs": 5, "dataset_options": {"size": 3}})
    assert (config.model, config.epochs, config.dataset_options) == ("a", 5, {"size": 3})
    with pytest.raises(ConfigError) as info:
        merge_config({"epochs": 0})
    assert "<command line>" in info.value.render()
    with pytest.raises(ConfigError) as info:
        merge_config({"bogus": 1})
    assert "unknown setting 'bogus'" in info.value.render()


def test_resolved_config_round_trips():
    config = merge_config({"model": "m", "dataset": "digits", "epochs": 4})
    assert RunConfig.from_dict(config.to_dict()) == config


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_prunecli_errors(tmp_path, data):
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    with contextlib.suppress(PruneCliError):
        load_config(path)


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from([*RunConfig().to_dict(), "bogus", "1"]), _VALUES, max_size=6))
def test_structured_garbage_gives_a_config_or_a_config_error(tmp_path, data):
    import yaml

    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(data) if data else "{}\n")
    try:
        config = load_config(path)
    except ConfigError:
        return
    assert isinstance(config, RunConfig)
