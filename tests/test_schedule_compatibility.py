"""docs/compatibility.md is generated: regenerating it must give the committed text."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location(
        "prunecli_compatibility_script", REPO / "scripts" / "compatibility.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_runtime_column_is_pluggable(tmp_path: Path, examples_dir: str) -> None:
    for rel in ("ncf/quantization_stats_split.yaml", "ssl/resnet20_cifar_baseline_training.yaml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(examples_dir) / rel, tmp_path / rel)
    compat = _script()
    text = compat.render(compat.build_rows(tmp_path, runtime=lambda rel: f"ran {rel.split('/')[0]}"))
    assert "| File | Status | Model | Against model | Runtime |" in text
    assert (
        "| `ncf/quantization_stats_split.yaml` | not a schedule: activation statistics | - | - | ran ncf |"
        in text
    )
    assert "| `ssl/resnet20_cifar_baseline_training.yaml` | valid | `resnet20_cifar` |" in text
    plain = compat.render(compat.build_rows(tmp_path))
    assert "Runtime" not in plain


@pytest.mark.slow
def test_committed_table_is_up_to_date(examples_dir: str) -> None:
    compat = _script()
    committed = (REPO / "docs" / "compatibility.md").read_text(encoding="utf-8")
    assert compat.generate(examples_dir) == committed, (
        "run: .venv/bin/python scripts/compatibility.py --write"
    )
