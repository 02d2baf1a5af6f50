"""Run every case of cases.yaml through the real CLI (click's CliRunner) in this one process.

Usage: python run_cases.py GEN_DIR TMP_DIR OUT_JSON [CASE_ID ...] (default: every case). GEN_DIR is
filled by make_inputs.py first. One process for all cases keeps the corpus
fast (torch is imported once) and keeps the test process free of the commands' global state.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import yaml
from click.testing import CliRunner

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def expand(arg: str, gen: Path, tmp: Path) -> str:
    return arg.format(bad=HERE, gen=gen, tmp=tmp, repo=REPO)


def main(gen: Path, tmp: Path, out: Path, only: list[str]) -> None:
    from prunecli.cli.main import cli

    sys.path.insert(0, str(HERE))
    import make_inputs

    gen.mkdir(parents=True, exist_ok=True)
    make_inputs.checkpoints(gen)
    make_inputs.model_files(gen)
    make_inputs.data_dirs(gen)

    cases = yaml.safe_load((HERE / "cases.yaml").read_text(encoding="utf-8"))
    if only:
        cases = [case for case in cases if case["id"] in only]
    runner = CliRunner()
    results = {}
    for case in cases:
        args = [expand(a, gen, tmp / case["id"]) for a in case["args"]]
        result = runner.invoke(cli, args, catch_exceptions=True)
        uncaught = None
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            uncaught = "".join(traceback.format_exception(result.exception))
        results[case["id"]] = {
            "args": args,
            "exit_code": result.exit_code,
            "output": result.output + (result.stderr if result.stderr not in result.output else ""),
            "uncaught": uncaught,
        }
    out.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:])
