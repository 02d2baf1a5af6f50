"""CI gates: ``--fail-if "macs_ratio > 0.6"`` against any numeric field of the JSON report.

A gate reads "fail if": the run fails (exit 1) when the comparison is TRUE. A gate that cannot
be parsed or names an unknown field is bad input (exit 2), listing the fields that exist.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prunecli.errors import GateFailed, Problem, PruneCliError

#: Longest operators first so "<=" is not read as "<".
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}

_GATE = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Gate:
    field: str
    op: str
    threshold: float
    text: str

    def __str__(self) -> str:
        return f"{self.field} {self.op} {self.threshold:g}"


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    actual: float
    failed: bool

    def render(self) -> str:
        verdict = "FAILED" if self.failed else "passed"
        return f"{verdict}: {self.gate} (actual {self.gate.field} = {self.actual:.6g})"


def parse_gate(text: str) -> Gate:
    m = _GATE.match(text)
    if not m:
        raise PruneCliError(
            f"malformed gate {text!r}",
            hint='write FIELD OP NUMBER with OP one of < <= > >=, e.g. --fail-if "macs_ratio > 0.6"',
        )
    return Gate(field=m.group(1), op=m.group(2), threshold=float(m.group(3)), text=text)


def numeric_fields(doc: Mapping[str, Any], prefix: str = "") -> dict[str, float | None]:
    """Every numeric (or null) leaf reachable through dicts, by dotted path; lists are not entered."""
    out: dict[str, float | None] = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(numeric_fields(value, path + "."))
        elif value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            out[path] = value
    return out


def _unknown_field_error(gate: Gate, fields: Mapping[str, float | None]) -> PruneCliError:
    available = sorted(fields)
    return PruneCliError(
        f"gate {gate.text!r} names unknown field {gate.field!r}",
        hint="use one of the numeric report fields: " + ", ".join(available),
    )


def evaluate_gates(report: Mapping[str, Any], gates: Iterable[str]) -> list[GateResult]:
    """Check every gate; malformed or unknown ones raise before any comparison is judged."""
    parsed = [parse_gate(g) for g in gates]
    fields = numeric_fields(report)
    results: list[GateResult] = []
    for gate in parsed:
        if gate.field not in fields:
            raise _unknown_field_error(gate, fields)
        actual = fields[gate.field]
        if actual is None or (isinstance(actual, float) and math.isnan(actual)):
            raise PruneCliError(
                f"gate {gate.text!r}: field {gate.field!r} has no value in this report",
                hint="accuracy needs metrics from a run or --evaluate DATASET; latency needs --latency",
            )
        results.append(GateResult(gate, float(actual), OPERATORS[gate.op](float(actual), gate.threshold)))
    return results


def enforce_gates(results: list[GateResult]) -> None:
    failed = [r for r in results if r.failed]
    if failed:
        raise GateFailed(
            f"{len(failed)} of {len(results)} gate(s) failed",
            problems=[Problem(r.render()) for r in failed],
            hint="the report does not meet the --fail-if conditions; see the actual values above",
        )
