"""docs/ci.md: its GitHub Actions job is valid YAML whose prunecli command lines parse, whose gates
name fields of the report schema, and (slow) whose commands succeed end to end on this checkout."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from prunecli.cli.main import cli

REPO = Path(__file__).resolve().parents[1]
DOC = (REPO / "docs" / "ci.md").read_text(encoding="utf-8")
SCHEMA = json.loads((REPO / "docs" / "report-schema.json").read_text(encoding="utf-8"))


def _workflow() -> dict:
    block = re.search(r"```yaml\n(.*?)```", DOC, re.S)
    assert block, "docs/ci.md has no yaml block"
    return yaml.safe_load(block.group(1))


def _commands() -> list[tuple[list[str], str | None]]:
    """Every prunecli command of the job's run steps: (arguments, file its stdout goes to)."""
    found = []
    for step in _workflow()["jobs"]["prune"]["steps"]:
        script = step.get("run", "").replace("\\\n", " ")
        for line in script.splitlines():
            words = shlex.split(line)
            if not words or words[0] != "prunecli":
                continue
            target = None
            if ">" in words:
                target = words[words.index(">") + 1]
                words = words[: words.index(">")]
            found.append((words[1:], target))
    return found


def _gates(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--fail-if"]


def _schema_has(path: str) -> bool:
    node = SCHEMA
    for part in path.split("."):
        if "$ref" in node:  # "#/$defs/side"
            node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[1]]
        props = node.get("properties", {})
        if part not in props:
            return False
        node = props[part]
    return True


def test_the_job_is_a_workflow_with_the_three_stages() -> None:
    job = _workflow()["jobs"]["prune"]
    assert job["runs-on"] and any("checkout" in s.get("uses", "") for s in job["steps"])
    names = [args[0] for args, _ in _commands()]
    assert names.count("validate") >= 1 and "run" in names and "report" in names


def test_every_command_line_parses() -> None:
    """Options and arguments exist and have the right types (nothing is run)."""
    for args, _ in _commands():
        command = cli.commands[args[0]]
        with command.make_context(args[0], list(args[1:])) as ctx:
            assert ctx.command is command


def test_every_gate_names_a_report_field() -> None:
    gates = [g for args, _ in _commands() for g in _gates(args)]
    assert gates
    table = re.findall(r"^\| `([a-z0-9_.]+)`", DOC.split("## The JSON fields to gate on")[1], re.M)
    for text in gates + [f"{field} > 0" for field in table]:
        field = text.split()[0]
        assert _schema_has(field), field


@pytest.mark.slow
def test_the_job_passes_on_this_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    outputs = {}
    for args, target in _commands():
        args = [a.replace("runs/ci", str(tmp_path / "runs" / "ci")) for a in args]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, (args, result.output)
        if target:
            outputs[target] = json.loads(result.stdout)
    report = outputs["report.json"]
    assert report["macs_ratio"] < 0.45 and report["top1"] >= 0.90
