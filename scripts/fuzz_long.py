#!/usr/bin/env python
"""Run the fuzz properties with a large budget (the default test suite runs ~60 examples each).

    .venv/bin/python scripts/fuzz_long.py                 # 5000 examples per property
    .venv/bin/python scripts/fuzz_long.py --examples 50000 -k checkpoint

The properties are the ones in tests/test_fuzz_checkpoint.py (checkpoint loader on random bytes,
truncations, mutations and insertions of real checkpoints, including ones whose pickle would run
code) and tests/test_fuzz_parsers.py (schedule and run-config parsers on random text, token soup
and mutations of the Distiller example schedules): only PruneCliError may escape, and no code from
a checkpoint may run. With a large budget hypothesis explores instead of replaying a fixed
sequence; failures are printed with the smallest failing input and stored in .hypothesis/.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILES = ["tests/test_fuzz_checkpoint.py", "tests/test_fuzz_parsers.py"]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=5000, help="examples per property (default 5000)")
    parser.add_argument("-k", dest="keyword", help="only properties whose test name matches (pytest -k)")
    args = parser.parse_args()
    command = [sys.executable, "-m", "pytest", *FILES, "-q", "-p", "no:randomly", "-m", "slow or not slow"]
    if args.keyword:
        command += ["-k", args.keyword]
    env = {**os.environ, "PRUNECLI_FUZZ_EXAMPLES": str(args.examples)}
    return subprocess.call(command, cwd=REPO, env=env)


if __name__ == "__main__":
    sys.exit(main())
