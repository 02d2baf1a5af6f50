"""The Python-API example in docs/examples runs and ends at its schedule's targets."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "custom_loop.py"


def test_custom_loop_example_runs(capsys):
    spec = importlib.util.spec_from_file_location("custom_loop_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main()
    assert result["dead_filters"] == 8  # floor(0.5 * 16) filters of features.3
    assert result["fc_sparsity"] == pytest.approx(int(0.7 * 160) / 160)
    assert result["lr"] == pytest.approx(0.1 * 0.5 ** (5 // 2))  # StepLR stepped to epoch + 1
    assert "epoch 4" in capsys.readouterr().out
