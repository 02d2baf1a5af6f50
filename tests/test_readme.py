"""README.md is the front page: its quick-start contract, command list and links stay true."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

#: The two quick-start commands are a contract with users and CI: byte-identical, always.
QUICKSTART_COMMANDS = (
    'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" '
    "&& prunecli run schedules/quickstart.yaml",
    'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" '
    "&& python -m pytest && python -m pytest -m slow",
)


def _script():
    spec = importlib.util.spec_from_file_location(
        "prunecli_readme_commands", REPO / "scripts" / "readme_commands.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_quickstart_commands_are_unchanged() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    for command in QUICKSTART_COMMANDS:
        assert command in lines, f"README.md no longer has the quick-start line {command!r}"


def test_command_list_names_exactly_the_registered_commands() -> None:
    script = _script()
    listed = script.listed_commands(README.read_text(encoding="utf-8"))
    registered = list(script.registered_commands())
    assert len(listed) == len(set(listed)), f"README.md lists a command twice: {listed}"
    missing = sorted(set(registered) - set(listed))
    removed = sorted(set(listed) - set(registered))
    assert not missing and not removed, (
        f"README.md's command list is out of date (missing: {missing}, no longer registered: {removed}); "
        "regenerate it with `python scripts/readme_commands.py --write`"
    )


def test_generated_rows_name_each_command_with_its_arguments() -> None:
    script = _script()
    rows = script.render().splitlines()
    assert rows[0] == script.BEGIN and rows[-1] == script.END
    thin = next(r for r in rows if r.startswith("| `prunecli thin "))
    assert thin.startswith("| `prunecli thin CHECKPOINT` | Thin CHECKPOINT")
    # run's schedule is optional (a resume takes none), and the usage says so
    assert any(r.startswith("| `prunecli run [SCHEDULE]` |") for r in rows)
    # the table round-trips through the parser the test above relies on
    assert script.listed_commands("\n".join(rows)) == list(script.registered_commands())


def test_relative_links_point_to_existing_files() -> None:
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert local, "README.md links into the docs"
    broken = [t for t in local if not (REPO / t).exists()]
    assert not broken, f"README.md links to missing files: {broken}"
