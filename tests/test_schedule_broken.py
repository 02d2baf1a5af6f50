"""Every file in tests/data/broken_schedules holds one mistake; the CLI must name it precisely.

Each file's header says what is expected: ``# expect: <message fragment>``,
``# expect-line: <line>``, when the mistake is only visible against a model,
``# model: <spec>``, and when it is only refused on request, ``# args: <options>``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from prunecli.cli.main import cli

DATA = Path(__file__).parent / "data" / "broken_schedules"
FILES = sorted(DATA.glob("*.yaml"))


def _header(path: Path) -> dict[str, str]:
    fields = {}
    for line in path.read_text().splitlines():
        m = re.match(r"#\s*(expect|expect-line|model|args):\s*(.*)$", line)
        if m:
            fields[m.group(1)] = m.group(2).strip()
    return fields


def _flat(text: str) -> str:
    """Undo the terminal's line wrapping so fragments can be searched."""
    return " ".join(text.split())


def test_corpus_is_large_and_annotated() -> None:
    assert len(FILES) >= 40
    for path in FILES:
        fields = _header(path)
        assert "expect" in fields and fields.get("expect-line", "").isdigit(), path.name


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_broken_schedule_is_refused_with_its_line(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fields = _header(path)
    monkeypatch.chdir(DATA)
    args = ["validate", path.name]
    if "model" in fields:
        args += ["--model", fields["model"]]
    args += fields.get("args", "").split()
    result = CliRunner().invoke(cli, args)
    output = _flat(result.output)
    assert result.exit_code == 2, output
    assert f"{path.name}:{fields['expect-line']}" in output, output
    assert _flat(fields["expect"]) in output, output
    assert "Traceback" not in output


@pytest.mark.parametrize("path", FILES[:5], ids=[p.stem for p in FILES[:5]])
def test_json_output_is_one_document_with_the_line(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    fields = _header(path)
    monkeypatch.chdir(DATA)
    args = ["validate", path.name, "--json"]
    if "model" in fields:
        args += ["--model", fields["model"]]
    args += fields.get("args", "").split()
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["valid"] is False
    lines = {p["line"] for p in doc["problems"]}
    assert int(fields["expect-line"]) in lines
    assert os.path.basename(doc["file"]) == path.name


def test_duplicate_key_is_a_warning_without_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    """Distiller's loader keeps the last of two equal keys; prunecli does too, but says so."""
    import json

    monkeypatch.chdir(DATA)
    result = CliRunner().invoke(cli, ["validate", "yaml_duplicate_key.yaml", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["valid"] is True
    [warning] = doc["warnings"]
    assert warning["line"] == 11
    assert "lines 10 and 11" in warning["message"] and "line 11 is used" in warning["message"]

    from prunecli.schedule import load_schedule

    schedule = load_schedule(DATA / "yaml_duplicate_key.yaml")
    assert schedule.components["pruners"]["agp"].args["final_sparsity"] == 0.8  # the last value


@pytest.mark.parametrize(
    "command",
    [["plan"], ["run", "--model", "resnet20_cifar", "--dataset", "fake", "--epochs", "1"]],
    ids=["plan", "run"],
)
def test_strict_refuses_duplicate_keys_in_plan_and_run(
    command: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(DATA)
    args = [command[0], "yaml_duplicate_key.yaml", *command[1:], "--strict"]
    if command[0] == "run":
        args += ["--out-dir", str(tmp_path / "run")]
    result = CliRunner().invoke(cli, args)
    output = _flat(result.output)
    assert result.exit_code == 2, output
    assert "yaml_duplicate_key.yaml:11" in output and "duplicate key 'final_sparsity'" in output
    assert not (tmp_path / "run").exists()  # refused before anything was written
