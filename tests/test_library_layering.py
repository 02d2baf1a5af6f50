"""The library never imports the command line: every CLI command is a shell over library code."""

from __future__ import annotations

import ast
from pathlib import Path

import prunecli

PACKAGE = Path(prunecli.__file__).parent
#: modules allowed to import prunecli.cli: the CLI itself and ``python -m prunecli``
CLI_SIDE = ("cli/", "__main__.py")


def _library_files() -> list[Path]:
    files = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if not rel.startswith(CLI_SIDE):
            files.append(path)
    return files


def _absolute(module: str | None, level: int, path: Path) -> str:
    """The absolute module name of an ``import``/``from`` target written in ``path``."""
    if level == 0:
        return module or ""
    parts = ["prunecli", *path.relative_to(PACKAGE).with_suffix("").parts]
    base = parts[: len(parts) - level]  # a module's own name counts as one level
    return ".".join([*base, *([module] if module else [])])


def _imported_names(source: str, path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import, and every string naming a module, in ``source``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(node.module, node.level, path)
            found += [(node.lineno, target), *((node.lineno, f"{target}.{a.name}") for a in node.names)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))  # importlib.import_module("prunecli.cli....")
    return found


def _cli_references(path: Path) -> list[str]:
    names = _imported_names(path.read_text(encoding="utf-8"), path)
    return [f"{path.relative_to(PACKAGE)}:{line}: {name}" for line, name in names if _is_cli(name)]


def _is_cli(name: str) -> bool:
    return name == "prunecli.cli" or name.startswith("prunecli.cli.")


def test_the_scan_sees_every_kind_of_import():
    """The oracle itself: each spelling of a CLI import in a library module is caught."""
    where = PACKAGE / "training" / "example.py"
    spellings = [
        "import prunecli.cli.console",
        "from prunecli.cli import console",
        "from ..cli.console import console",
        "from .. import cli",
        "importlib.import_module('prunecli.cli.main')",
    ]
    for text in spellings:
        assert any(_is_cli(name) for _, name in _imported_names(text, where)), text
    harmless = "from . import app\nfrom ..checkpoint import io\nimport prunecli.client\n"
    assert not any(_is_cli(name) for _, name in _imported_names(harmless, where))


def test_library_modules_never_import_the_cli():
    files = _library_files()
    assert len(files) > 50  # the scan really walked the package
    offenders = [ref for path in files for ref in _cli_references(path)]
    assert offenders == [], "library modules importing prunecli.cli:\n" + "\n".join(offenders)


def test_thinning_recipe_is_data_that_imports_no_thinning_action():
    """``recipe`` holds the data and ``execute`` acts with it: the import goes one way only."""
    path = PACKAGE / "thinning" / "recipe.py"
    names = [name for _, name in _imported_names(path.read_text(encoding="utf-8"), path)]
    assert not [n for n in names if n.startswith("prunecli.thinning")]


def test_tests_do_not_skip_when_a_prunecli_module_is_missing():
    """A renamed module must fail the tests that use it, not skip them silently."""
    tests = Path(__file__).parent
    offenders = []
    for path in sorted(tests.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "importorskip"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).split(".")[0] == "prunecli"
            ):
                offenders.append(f"{path.relative_to(tests)}:{node.lineno}")
    assert offenders == []
