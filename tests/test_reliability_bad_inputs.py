"""Bad-input corpus: each input, through the real CLI, exits 2 naming the file, with no traceback.

The cases (command line + the file name the message must contain) are in
tests/data/bad_inputs/cases.yaml; make_inputs.py generates the binary ones (checkpoints, data
directories). Generation and all cases run in one subprocess (run_cases.py, click's CliRunner) so torch is
imported once. A smoke subset, one case per kind of input, runs in the default suite; the full
corpus is marked slow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BAD = Path(__file__).resolve().parent / "data" / "bad_inputs"
CASES = {case["id"]: case for case in yaml.safe_load((BAD / "cases.yaml").read_text(encoding="utf-8"))}
SMOKE = [
    "schedule-validate-yaml_syntax",
    "config-unknown_key",
    "model-run-raising_factory",
    "data-mnist-empty-dir",
    "checkpoint-report-distiller.pth.tar",
    "checkpoint-resume-malicious",
]


def _run_corpus(tmp: Path, only: list[str]) -> dict:
    gen = tmp / "gen"
    out = tmp / "results.json"
    subprocess.run(
        [sys.executable, str(BAD / "run_cases.py"), str(gen), str(tmp / "scratch"), str(out), *only],
        check=True,
        timeout=900,
    )
    results = json.loads(out.read_text(encoding="utf-8"))
    results["__marker_created__"] = any(gen.glob("MARKER*"))
    return results


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _run_corpus(tmp_path_factory.mktemp("bad-smoke"), SMOKE)


@pytest.fixture(scope="module")
def all_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _run_corpus(tmp_path_factory.mktemp("bad-all"), [])


def _check(results: dict, case_id: str) -> None:
    result = results[case_id]
    output = result["output"]
    flat = output.replace("\n", "")  # the terminal renderer wraps long paths
    assert result["uncaught"] is None, result["uncaught"]
    assert "Traceback" not in output
    assert result["exit_code"] == 2, f"{result['args']} exited {result['exit_code']}:\n{output}"
    assert CASES[case_id]["expect"] in flat, f"message does not name {CASES[case_id]['expect']}:\n{output}"
    assert not results["__marker_created__"], "a malicious checkpoint ran code"


def test_corpus_has_at_least_60_cases_over_every_kind_of_input() -> None:
    assert len(CASES) >= 60
    kinds = {case_id.split("-")[0] for case_id in CASES}
    assert kinds == {"schedule", "config", "model", "data", "checkpoint"}
    assert set(SMOKE) <= set(CASES)


@pytest.mark.parametrize("case_id", SMOKE)
def test_bad_input_smoke(smoke_results: dict, case_id: str) -> None:
    _check(smoke_results, case_id)


@pytest.mark.slow
@pytest.mark.parametrize("case_id", sorted(CASES))
def test_bad_input(all_results: dict, case_id: str) -> None:
    _check(all_results, case_id)
