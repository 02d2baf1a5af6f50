"""The CLI's error contract: one paragraph, meaningful exit codes, tracebacks only with --debug."""

import click
import pytest
from click.testing import CliRunner

from prunecli.cli.main import EXIT_INTERNAL, cli
from prunecli.errors import GateFailed, ScheduleError, SourceLocation


@pytest.fixture
def failing_command():
    @click.command("boom")
    @click.argument("kind")
    def boom(kind: str) -> None:
        if kind == "schedule":
            raise ScheduleError(
                "unknown pruner class 'AutomatedGradualPrunr'",
                location=SourceLocation("s.yaml", 7, 12),
                hint="did you mean AutomatedGradualPruner?",
            )
        if kind == "gate":
            raise GateFailed("top1 < 0.9 (top1 = 0.85)")
        raise ZeroDivisionError("division by zero")

    cli.add_command(boom)
    yield
    cli.commands.pop("boom")


def test_user_error_exits_2_with_location_and_fix(failing_command):
    result = CliRunner().invoke(cli, ["boom", "schedule"])
    assert result.exit_code == 2
    assert "s.yaml:7:12" in result.output
    assert "did you mean AutomatedGradualPruner?" in result.output
    assert "Traceback" not in result.output


def test_gate_failure_exits_1(failing_command):
    result = CliRunner().invoke(cli, ["boom", "gate"])
    assert result.exit_code == 1
    assert "top1 = 0.85" in result.output


def test_internal_error_has_no_traceback_unless_debug(failing_command):
    plain = CliRunner().invoke(cli, ["boom", "other"])
    assert plain.exit_code == EXIT_INTERNAL
    assert "Traceback" not in plain.output
    assert "--debug" in plain.output
    debug = CliRunner().invoke(cli, ["--debug", "boom", "other"])
    assert debug.exit_code == EXIT_INTERNAL
    assert "Traceback" in debug.output


def test_bracketed_text_in_errors_is_printed_literally(tmp_path):
    """A file name or message with rich markup syntax must neither vanish nor crash the printer."""
    path = tmp_path / "run[bold]x.yaml"
    path.write_text("version: 1\npruners:\n  p: {class: NoSuchPruner}\n")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert "run[bold]x.yaml" in result.output.replace("\n", "")
    assert "NoSuchPruner" in result.output
