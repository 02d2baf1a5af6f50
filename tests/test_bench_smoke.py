"""The benchmark package: harness arithmetic, the plain baseline's masks, and a --quick end-to-end run."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.harness import Stats, alternate, rotation
from bench.markdown import table
from bench.plain_train import magnitude_mask
from bench.results import Table

REPO_ROOT = Path(__file__).resolve().parents[1]
SECTIONS = (
    "Masking overhead during training",
    "Dependency analysis and thinning",
    "Inference speed-up of thinned models",
    "Deployment: rounded channels, folded BatchNorm, ONNX Runtime, export",
    "The application's own cost",
    "Accuracy retention on digits",
    "Pruning engine: per-step overhead",
    "Pruning engine: accuracy at half the MACs on digits",
    "Transformers: LayerNorm channels pruned",
    "Quantization: post-training int8 and pruned + int8",
)


def test_rotation_puts_every_variant_in_every_position():
    names = ["a", "b", "c"]
    orders = [rotation(names, i) for i in range(3)]
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    for position in range(3):
        assert {order[position] for order in orders} == set(names)


def test_alternate_ratios_are_per_round_and_failures_are_recorded():
    base_times = iter([1.0, 2.0, 4.0, 8.0])  # drifting machine: the baseline doubles every round
    slow_times = iter([3.0, 6.0, 12.0, 24.0])

    def broken() -> float:
        raise RuntimeError("peer crashed\nsecond line")

    stats = alternate(
        {"base": lambda: next(base_times), "slow": lambda: next(slow_times), "broken": broken},
        baseline="base",
        rounds=3,
        warmup=1,
    )
    assert stats["base"].times == [2.0, 4.0, 8.0]
    assert stats["slow"].ratios == pytest.approx([3.0, 3.0, 3.0])  # drift cancels in the ratio
    assert stats["slow"].ratio == pytest.approx(3.0)
    assert stats["slow"].median == 12.0
    assert not stats["broken"].ok
    assert stats["broken"].error == "RuntimeError: peer crashed"


def test_stats_without_samples_has_no_ratio():
    assert Stats("x").ratio is None and Stats("x").ratio_range is None


def test_alternate_rejects_unknown_baseline():
    with pytest.raises(ValueError):
        alternate({"a": lambda: 1.0}, baseline="b", rounds=1)


def test_markdown_table_escapes_pipes():
    t = Table("caption", ["a", "b"])
    t.add("x|y", 2)
    assert table(t).splitlines()[-1] == "| x\\|y | 2 |"
    with pytest.raises(ValueError):
        t.add("only one cell")


def test_plain_masks_keep_the_largest_elements_and_filters():
    w = torch.tensor([[[[1.0, -4.0]], [[0.5, 3.0]]], [[[0.1, 0.2]], [[-0.3, 0.0]]]])  # (2, 2, 1, 2)
    element = magnitude_mask(w, 0.5, filters=False)
    assert element.sum() == 4
    assert element[0, 0, 0, 1] == 1 and element[0, 1, 0, 1] == 1 and element[0, 0, 0, 0] == 1
    assert element[1].sum() == 0  # all four smallest magnitudes sit in filter 1
    filters = magnitude_mask(w, 0.5, filters=True)
    assert filters.shape == w.shape
    assert torch.equal(filters[0], torch.ones_like(w[0])) and filters[1].sum() == 0  # L1 8.5 vs 0.6


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## \d+\. ", text, flags=re.M)[1:]
    return {p.splitlines()[0]: p for p in parts}


def _table_rows(section: str) -> list[str]:
    return [ln for ln in section.splitlines() if ln.startswith("| ") and not ln.startswith("| goal")]


@pytest.mark.slow
def test_thinning_table_says_not_installed_without_torch_pruning(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch_pruning", None)  # import fails as if not installed
    from bench.cli import main

    out = tmp_path / "bench.md"
    assert main(["thinning", "--quick", "--output", str(out)]) == 0
    text = out.read_text()
    assert re.search(r"\| Torch-Pruning \| not installed \|", text)


@pytest.mark.slow
def test_quick_run_writes_every_table_with_numbers(tmp_path):
    out = tmp_path / "bench.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "all", "--quick", "--output", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    assert "Command: `python -m bench all --quick --output" in text
    assert re.search(r"\| CPU \| .+ \|", text) and f"| torch | {torch.__version__} |" in text
    sections = _sections(text)
    assert set(SECTIONS) <= set(sections)
    for title in SECTIONS:
        body = sections[title]
        rows = _table_rows(body)
        assert rows, title
        assert any(re.search(r"\d+\.\d+ ?(ms|s|x|%|MiB|k|M)\b", row) for row in rows), title
        verdicts = re.findall(r"\*\*(met|missed|not measured)\*\*", body)
        assert verdicts, f"{title}: no target verdicts"
    tp_installed = importlib.util.find_spec("torch_pruning") is not None
    thinning = sections["Dependency analysis and thinning"]
    if tp_installed:
        assert re.search(r"\| Torch-Pruning \| \d+\.\d+ ms", thinning)
    else:
        assert "| Torch-Pruning | not installed |" in thinning


def test_alternate_limits_slow_variants_to_their_first_rounds():
    calls = {"fast": 0, "slow": 0}

    def count(name: str):
        def run() -> float:
            calls[name] += 1
            return 1.0

        return run

    stats = alternate(
        {"fast": count("fast"), "slow": count("slow")},
        baseline="fast",
        rounds=4,
        warmup=0,
        max_rounds={"slow": 1},
    )
    assert calls == {"fast": 4, "slow": 1}
    assert len(stats["slow"].ratios) == 1 and len(stats["fast"].ratios) == 4


def test_launcher_reports_the_commands_own_peak_memory_and_exit_code(tmp_path):
    usage = tmp_path / "usage.json"
    grow = "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"
    done = subprocess.run(
        [sys.executable, "-m", "bench.launch", str(usage), "--", sys.executable, "-c", grow], cwd=REPO_ROOT
    )
    assert done.returncode == 0
    import json

    peak = json.loads(usage.read_text())["maxrss_kib"] * 1024
    assert 300 * 2**20 <= peak < 600 * 2**20  # its own 300 MiB, not this (torch-sized) test process
    failed = subprocess.run(
        [sys.executable, "-m", "bench.launch", str(usage), "--", sys.executable, "-c", "raise SystemExit(3)"],
        cwd=REPO_ROOT,
    )
    assert failed.returncode == 3
