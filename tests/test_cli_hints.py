"""Every `--option` an error message or hint tells the user to pass exists on some command.

The messages are collected from the source (every string literal in prunecli/ that is not a
docstring, f-string parts included) and the options from the registered click command tree, so a
renamed option or a hint naming an option that was never added fails here.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import click

from prunecli.cli.main import cli

PACKAGE = Path(__file__).resolve().parents[1] / "prunecli"
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def accepted_options(command: click.Command) -> set[str]:
    """Long options of ``command`` and of every sub-command below it (``--help`` everywhere)."""
    found = {"--help"}
    for param in command.params:
        if isinstance(param, click.Option):
            found.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--"))
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            found |= accepted_options(sub)
    return found


def _docstring_ids(tree: ast.AST) -> set[int]:
    owners = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, owners)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def _argparse_ids(tree: ast.AST) -> set[int]:
    """Strings inside ``parser.add_argument(...)``: options of a ``python -m`` script, not hints."""
    return {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "add_argument"
        for inner in ast.walk(node)
    }


def option_mentions(source: str, filename: str) -> Iterator[tuple[str, int, str]]:
    """``(filename, line, --option)`` for each option named in a message of ``source``.

    A string that is nothing but one option (``"--standalone"``) is a command-line token handed to a
    program or an option's declaration, not prose telling the user what to type, and is skipped.
    """
    tree = ast.parse(source, filename)
    skip = _docstring_ids(tree) | _argparse_ids(tree)
    fstring_parts = {
        id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values
    }
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in skip:
            continue
        if id(node) in fstring_parts or not OPTION.fullmatch(node.value):
            for option in OPTION.findall(node.value):
                yield filename, node.lineno, option


def test_scanner_finds_options_in_messages_and_fstrings_but_not_docstrings() -> None:
    source = '''
def f(n):
    """Docstrings may mention Distiller's --exp-load-weights-from."""
    subprocess.run(["torchrun", "--standalone", "-m", "prunecli"])
    raise ValueError(f"bad value {n}; pass --data-set {n} or --epochs")
    warn(f"--lr {n} is high")
'''
    assert [m[2] for m in option_mentions(source, "x.py")] == ["--data-set", "--epochs", "--lr"]
    assert "--data-set" not in accepted_options(cli)


def test_every_option_named_in_a_message_is_accepted_by_some_command() -> None:
    accepted = accepted_options(cli)
    mentions = [
        mention
        for path in sorted(PACKAGE.rglob("*.py"))
        for mention in option_mentions(
            path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent))
        )
    ]
    assert len(mentions) > 50, "the scan should see the hints of every command"
    unknown = [f"{file}:{line}: {option}" for file, line, option in mentions if option not in accepted]
    assert not unknown, "messages name options no command accepts:\n" + "\n".join(unknown)
