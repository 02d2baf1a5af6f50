"""A CI step that reads ``prunecli report --json`` and fails the job when a target is missed.

``prunecli report SOURCE --fail-if "top1 < 0.9"`` covers fixed thresholds. This script shows what
to do when a step needs more: compare against the report of the last accepted model (a
*baseline* kept as a build artefact), and write a Markdown summary for the CI page.

    python examples/ci_gate.py runs/my-run --min-top1 0.90 --max-macs-ratio 0.5
    python examples/ci_gate.py runs/my-run --baseline baseline.json --max-top1-drop 0.01
    python examples/ci_gate.py compact.pt --model net.py:Net --save-report report.json

Exit status: 0 when every target is met, 1 when one is missed, 2 when the report itself fails
(bad path, unknown model: prunecli's own message is shown). On GitHub Actions the summary is
also appended to ``$GITHUB_STEP_SUMMARY``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_MISSED, EXIT_BAD_INPUT = 0, 1, 2


@dataclass(frozen=True)
class Check:
    """One target: a name, the measured value, the limit, and whether it is met."""

    name: str
    value: float | None
    limit: float
    met: bool

    def line(self) -> str:
        shown = "n/a" if self.value is None else f"{self.value:.4g}"
        return f"| {'ok' if self.met else '**missed**'} | {self.name} | {shown} | {self.limit:.4g} |"


def run_report(source: str, model: str | None) -> dict[str, Any]:
    """``prunecli report SOURCE --json`` as a CI step runs it; prunecli's exit status is kept."""
    prunecli = shutil.which("prunecli", path=str(Path(sys.executable).parent)) or "prunecli"
    command = [prunecli, "report", source, "--json", "--no-latency"]
    if model:
        command += ["--model", model]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(EXIT_BAD_INPUT)
    return json.loads(done.stdout)


def checks(report: dict[str, Any], baseline: dict[str, Any] | None, args: argparse.Namespace) -> list[Check]:
    """The targets asked for on the command line, each judged on the report's own fields."""
    found: list[Check] = []
    top1, macs_ratio = report.get("top1"), report.get("macs_ratio")
    if args.min_top1 is not None:
        found.append(Check("top-1", top1, args.min_top1, top1 is not None and top1 >= args.min_top1))
    if args.max_macs_ratio is not None:
        met = macs_ratio is not None and macs_ratio <= args.max_macs_ratio
        found.append(Check("MACs / dense MACs", macs_ratio, args.max_macs_ratio, met))
    if baseline is not None:
        old_top1 = baseline.get("top1")
        drop = None if top1 is None or old_top1 is None else old_top1 - top1
        found.append(
            Check(
                "top-1 drop vs baseline",
                drop,
                args.max_top1_drop,
                drop is not None and drop <= args.max_top1_drop,
            )
        )
        macs, old_macs = report["headline"]["compressed"]["macs"], baseline["headline"]["compressed"]["macs"]
        found.append(Check("MACs vs baseline", macs / old_macs, 1.0, macs <= old_macs))
    return found


def summary(source: str, found: list[Check]) -> str:
    rows = "\n".join(check.line() for check in found)
    return f"### Compression targets for `{source}`\n\n| | target | measured | limit |\n|---|---|---|---|\n{rows}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a run directory or a checkpoint")
    parser.add_argument("--model", help="model spec for checkpoints of your own model (file.py:Class)")
    parser.add_argument("--min-top1", type=float, help="fail below this top-1 (a fraction)")
    parser.add_argument("--max-macs-ratio", type=float, help="fail above this share of the dense MACs")
    parser.add_argument("--baseline", type=Path, help="report JSON of the last accepted model")
    parser.add_argument("--max-top1-drop", type=float, default=0.0, help="allowed top-1 loss vs the baseline")
    parser.add_argument(
        "--save-report", type=Path, help="also write this run's report JSON (the next baseline)"
    )
    args = parser.parse_args(argv)

    report = run_report(args.source, args.model)
    baseline = json.loads(args.baseline.read_text()) if args.baseline else None
    if args.save_report:
        args.save_report.write_text(json.dumps(report, indent=2))
    found = checks(report, baseline, args)
    text = summary(args.source, found)
    print(text)
    if "GITHUB_STEP_SUMMARY" in os.environ:
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as handle:
            handle.write(text)
    return EXIT_OK if all(check.met for check in found) else EXIT_MISSED


if __name__ == "__main__":
    sys.exit(main())
