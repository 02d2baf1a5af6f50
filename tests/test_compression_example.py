"""The Python-API example in examples/ runs and ends at its schedule's targets."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_loop.py"


def test_custom_loop_example_runs(capsys):
    spec = importlib.util.spec_from_file_location("custom_loop_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main()
    assert result["dead_filters"] == 8  # floor(0.5 * 16) filters of features.3
    assert result["fc_sparsity"] == pytest.approx(int(0.7 * 160) / 160)
    assert result["lr"] == pytest.approx(0.1 * 0.5 ** (5 // 2))  # StepLR stepped to epoch + 1
    assert "epoch 4" in capsys.readouterr().out
    # conv 3->8 (3x3, bias), conv 8->16, linear 16->10; thinning keeps 8 of the 16 filters
    # of features.3 and the 8 classifier inputs that read them
    assert result["params_before"] == (3 * 8 * 9 + 8) + (8 * 16 * 9 + 16) + (16 * 10 + 10)
    assert result["params_after"] == (3 * 8 * 9 + 8) + (8 * 8 * 9 + 8) + (8 * 10 + 10)
