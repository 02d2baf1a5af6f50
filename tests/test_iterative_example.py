"""examples/iterative_api.py runs and ends at a model within its MAC budget."""

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # trains on the digits: about 10 s on two busy cores

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "iterative_api.py"


def test_iterative_api_example_meets_its_mac_budget(capsys):
    spec = importlib.util.spec_from_file_location("iterative_api_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(epochs=1)
    # AGP, T = 3, budget keep 0.4: 1 - 0.6 * (1 - (1 - i/3)^3)
    assert result["goals"] == pytest.approx([1 - 0.6 * (1 - (1 - i / 3) ** 3) for i in (1, 2, 3)])
    # MACs of the thinned SmallCNN counted by hand: conv1 1->c1, conv2 c1->c2 (3x3 on 8x8), fc c2->10
    c1, c2 = result["conv1"], result["conv2"]
    dense = 64 * 16 * 9 + 64 * 32 * 16 * 9 + 32 * 10
    assert result["macs"] == pytest.approx((64 * c1 * 9 + 64 * c2 * c1 * 9 + c2 * 10) / dense)
    assert result["macs"] <= 0.4
    assert "best: iteration" in capsys.readouterr().out
