"""Entry point: discovers the sub-commands and turns errors into one paragraph and an exit code."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import traceback

import click
from rich.markup import escape

from prunecli.errors import PruneCliError

from . import commands as _commands_pkg
from .console import err_console

EXIT_INTERNAL = 4


class _Group(click.Group):
    """Runs a sub-command and maps every failure to a clear message and exit code."""

    def invoke(self, ctx: click.Context):  # noqa: D401 - click API
        debug = bool(ctx.params.get("debug")) or os.environ.get("PRUNECLI_DEBUG") == "1"
        try:
            return super().invoke(ctx)
        except PruneCliError as exc:
            if debug:
                traceback.print_exc()
            err_console.print(
                f"[bold red]{exc.kind}:[/] {escape(exc.render())}", highlight=False, markup=True
            )
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/]")
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
            raise
        except Exception as exc:  # an internal bug: still one paragraph unless --debug
            if debug:
                traceback.print_exc()
            err_console.print(
                f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
                "This is a bug in prunecli, not in your input. Re-run with --debug for the traceback "
                "and report it with the command line you used.",
                highlight=False,
            )
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="prunecli")
def cli(debug: bool) -> None:
    """Prune, thin and report PyTorch models driven by Distiller-style YAML schedules."""


def _register_commands() -> None:
    for info in sorted(pkgutil.iter_modules(_commands_pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{_commands_pkg.__name__}.{info.name}")
        command = getattr(module, "command", None)
        if isinstance(command, click.Command):
            cli.add_command(command)


_register_commands()


def main() -> None:
    cli(prog_name="prunecli")


if __name__ == "__main__":
    main()
    sys.exit(0)
