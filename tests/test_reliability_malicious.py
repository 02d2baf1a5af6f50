"""A checkpoint whose unpickling would run code is refused by every command that reads checkpoints.

The payload's ``__reduce__`` would create a marker file (and, in the second variant, call
os.system to create another). After each command the markers must not exist, the exit code is 2
and the message names the file. One real subprocess checks the installed entry point; the other
commands run in-process through click's CliRunner.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from prunecli.checkpoint import load_checkpoint
from prunecli.errors import CheckpointError


class _OpenMarker:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class _ShellMarker:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.fixture
def evil(tmp_path: Path) -> dict[str, Path]:
    markers = [tmp_path / "marker_open", tmp_path / "marker_shell"]
    payload = {
        "format": "prunecli-checkpoint",
        "state_dict": {"w": torch.zeros(2)},
        "a": _OpenMarker(markers[0]),
        "b": _ShellMarker(markers[1]),
    }
    path = tmp_path / "evil.pt"
    torch.save(payload, path)
    legacy = tmp_path / "evil_legacy.pth.tar"
    torch.save(payload, legacy, _use_new_zipfile_serialization=False)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(path.read_bytes())
    return {"file": path, "legacy": legacy, "run_dir": run_dir, "markers": markers, "tmp": tmp_path}


def _assert_untouched(evil: dict[str, Path]) -> None:
    for marker in evil["markers"]:
        assert not marker.exists(), f"code from the checkpoint ran ({marker.name} was created)"


@pytest.mark.parametrize("which", ["file", "legacy"])
def test_load_checkpoint_refuses(evil: dict[str, Path], which: str) -> None:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(evil[which])
    text = info.value.render()
    assert "io.open" in text and "posix.system" in text and str(evil[which]) in text
    _assert_untouched(evil)


#: command name -> arguments that make it read the checkpoint (keys: file, run_dir, tmp)
COMMANDS: dict[str, list[str]] = {
    "report": ["{file}", "--no-latency"],
    "sensitivity": ["{file}", "--dataset", "digits", "--max-batches", "1", "--out", "{tmp}/sens"],
    "run": ["--resume", "{run_dir}"],
    "thin": ["{file}", "-o", "{tmp}/thin.pt"],
    "import-distiller": ["{file}", "-o", "{tmp}/imported.pt"],
    "export": ["{file}", "--format", "onnx", "-o", "{tmp}/m.onnx"],
    "collect-stats": ["{file}", "--dataset", "digits", "--batches", "1", "--out", "{tmp}/stats.yaml"],
}
#: commands that read schedules and models but never a checkpoint
NO_CHECKPOINT = {"validate", "plan", "deps", "completion", "convert"}


def test_every_command_is_covered() -> None:
    """A new command must join COMMANDS (or NO_CHECKPOINT) so its checkpoint loading is tested."""
    from prunecli.cli.main import cli

    assert set(cli.commands) == set(COMMANDS) | NO_CHECKPOINT


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_checkpoint_command_refuses(evil: dict[str, Path], name: str) -> None:
    from prunecli.cli.main import cli

    args = [a.format(file=evil["file"], run_dir=evil["run_dir"], tmp=evil["tmp"]) for a in COMMANDS[name]]
    result = CliRunner().invoke(cli, [name, *args])
    output = result.output.replace("\n", "")
    assert result.exit_code == 2, result.output
    assert "evil.pt" in output or "checkpoint.pt" in output
    assert "Traceback" not in result.output
    _assert_untouched(evil)


@pytest.mark.parametrize("option", ["--resume", "--initial-weights"])
def test_run_from_a_checkpoint_file_refuses(evil: dict[str, Path], option: str) -> None:
    """``run --resume FILE`` / ``--initial-weights FILE`` read the file before anything else."""
    from prunecli.cli.main import cli

    args = ["run", option, str(evil["file"]), "--model", "resnet_digits", "--dataset", "digits"]
    result = CliRunner().invoke(cli, [*args, "-o", str(evil["tmp"] / "r")])
    assert result.exit_code == 2, result.output
    assert "evil.pt" in result.output.replace("\n", "") and "Traceback" not in result.output
    _assert_untouched(evil)


def test_commands_reading_checkpoints_are_all_covered() -> None:
    """A new command taking a checkpoint must be added to COMMANDS above."""
    from prunecli.cli.main import cli

    readers = set()
    for name, command in cli.commands.items():
        names = " ".join(p.name or "" for p in command.params).lower()
        if "checkpoint" in names or "resume" in names or "source" in names:
            readers.add(name)
    assert readers <= set(COMMANDS), f"add these commands to COMMANDS: {sorted(readers - set(COMMANDS))}"


def test_real_entry_point_refuses(evil: dict[str, Path]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "prunecli", "report", str(evil["legacy"]), "--no-latency"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert done.returncode == 2, done.stderr
    assert "evil_legacy.pth.tar" in done.stderr and "nothing from it was executed" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    _assert_untouched(evil)
