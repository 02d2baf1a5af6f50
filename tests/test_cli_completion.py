"""Shell completion: `prunecli completion SHELL` prints click's script, and the script completes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from prunecli.cli.main import cli

REPO = Path(__file__).resolve().parents[1]


def _invoke(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, args, prog_name="prunecli", env=env)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_clicks_own_script(shell: str) -> None:
    printed = _invoke(["completion", shell])
    assert printed.exit_code == 0, printed.output
    native = _invoke([], env={"_PRUNECLI_COMPLETE": f"{shell}_source"})
    assert native.exit_code == 0
    assert printed.output == native.output
    assert f"_PRUNECLI_COMPLETE={shell}_complete" in printed.output


def test_unknown_shell_is_refused_with_the_choices() -> None:
    result = _invoke(["completion", "tcsh"])
    assert result.exit_code == 2
    assert "'bash', 'zsh', 'fish'" in result.output


@pytest.mark.parametrize(
    ("shell", "words", "cword", "expected"),
    [
        ("bash", "prunecli th", "1", "plain,thin\n"),
        ("bash", "prunecli thin --r", "2", "plain,--rule\n"),
        ("zsh", "prunecli comp", "1", "plain\ncompletion\n"),
        ("fish", "prunecli valid", "valid", "plain,validate\t"),
    ],
)
def test_completion_protocol_answers_from_the_registered_commands(
    shell: str, words: str, cword: str, expected: str
) -> None:
    env = {"_PRUNECLI_COMPLETE": f"{shell}_complete", "COMP_WORDS": words, "COMP_CWORD": cword}
    result = _invoke([], env=env)
    assert result.exit_code == 0
    assert result.output.startswith(expected)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_script_completes_a_command_name_in_a_real_shell(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    prunecli = shutil.which("prunecli", path=str(bin_dir))
    if prunecli is None:
        pytest.skip("the prunecli entry point is not installed next to this interpreter")
    script = tmp_path / "prunecli.bash"
    script.write_text(_invoke(["completion", "bash"]).output)
    probe = (
        f'. "{script}"; '
        'COMP_WORDS=(prunecli th); COMP_CWORD=1; _prunecli_completion prunecli; printf "%s\\n" "${COMPREPLY[@]}"; '
        'COMPREPLY=(); COMP_WORDS=(prunecli thin --rule ""); COMP_CWORD=3; _prunecli_completion prunecli; '
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    path = os.environ.get("PYTHONPATH", "")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO) + (os.pathsep + path if path else ""),
    }
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["thin", "exact", "distiller"]
