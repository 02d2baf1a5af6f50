"""Regenerate docs/compatibility.md: how prunecli handles every Distiller example file.

Columns: the file, whether the schedule validates (or why it is refused, or what else the file
is), the model it was written for, whether every parameter name matches that model, and
optionally a runtime column filled by a function ``relpath -> str``. By default the runtime
column comes from docs/compatibility-runtime.json (written by scripts/runtime_sweep.py) when
that file exists.

    .venv/bin/python scripts/compatibility.py                # print the table
    .venv/bin/python scripts/compatibility.py --write        # rewrite docs/compatibility.md
    .venv/bin/python scripts/compatibility.py --check        # exit 1 if the committed file is stale
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EXAMPLES = Path(
    os.environ.get("PRUNECLI_EXAMPLES", REPO_ROOT.parent / "shared" / "distiller-examples")
)
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "compatibility.md"
RUNTIME_JSON = REPO_ROOT / "docs" / "compatibility-runtime.json"

RuntimeColumn = Callable[[str], str]


@dataclass
class Row:
    path: str  # relative to the examples directory
    status: str
    model: str | None = None
    against_model: str = "-"
    runtime: str | None = None


def _one_line(text: str, limit: int = 140) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _problem_line(error: Any) -> str:
    problems = getattr(error, "problems", None) or []
    if not problems:
        return _one_line(error.message)
    first = problems[0]
    where = f" (line {first.location.line})" if first.location and first.location.line else ""
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return _one_line(f"{first.message}{where}{more}")


def _sweep_module() -> Any | None:
    """scripts/runtime_sweep.py, which knows each example's target model (None if absent)."""
    path = REPO_ROOT / "scripts" / "runtime_sweep.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("prunecli_runtime_sweep", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules.setdefault(spec.name, module)  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def target_model(relpath: str, schedule: Any) -> str | None:
    sweep = _sweep_module()
    return sweep.target_model(relpath, schedule) if sweep else None


@functools.cache
def _model_shapes(name: str) -> dict[str, tuple[int, ...]] | str:
    """Parameter shapes of a model built on the meta device, or why it cannot be built."""
    from prunecli.errors import PruneCliError
    from prunecli.models import available_models
    from prunecli.validation import load_model_info

    sweep = _sweep_module()
    available = sweep.model_available(name) if sweep else name in available_models()
    if not available:
        return f"model '{name}' is not available"
    try:
        return load_model_info(name, meta=True).shapes
    except PruneCliError as exc:
        return _one_line(f"model '{name}' cannot be built: {exc.message}")


def check_example(path: Path, examples_dir: Path) -> Row:
    from prunecli.schedule.names import resolve_names
    from prunecli.validation import check_file

    rel = path.relative_to(examples_dir).as_posix()
    result = check_file(str(path))
    if result.classification is not None:
        kind = result.error.message.removeprefix("not a schedule: ").split(" (")[0]
        return Row(rel, f"not a schedule: {kind}")
    if result.error is not None:
        return Row(rel, f"refused: {_problem_line(result.error)}")
    row = Row(rel, "valid")
    row.model = target_model(rel, result.schedule)
    if row.model is None:
        return row
    shapes = _model_shapes(row.model)
    if isinstance(shapes, str):
        row.against_model = shapes
        return row
    from prunecli.errors import PruneCliError

    try:
        resolve_names(result.schedule, shapes)
        row.against_model = f"valid against {row.model}"
    except PruneCliError as exc:
        row.against_model = f"refused: {_problem_line(exc)}"
    return row


def runtime_from_json(path: str | os.PathLike[str] = RUNTIME_JSON) -> RuntimeColumn | None:
    """A runtime column from runtime_sweep.py's committed JSON (None when there is none)."""
    sweep = _sweep_module()
    if sweep is None or not Path(path).exists():
        return None
    data = sweep.read_json(path)

    def cell(rel: str) -> str:
        record = data.get(rel)
        if record is None:
            return "not run"
        try:
            outcome = sweep.RuntimeOutcome(
                **{
                    **record,
                    "input_shape": tuple(record["input_shape"]) if record.get("input_shape") else None,
                    "pruners": [sweep.PrunerResult(**p) for p in record.get("pruners", [])],
                    "thinning": [sweep.ThinningResult(**t) for t in record.get("thinning", [])],
                }
            )
            return _one_line(outcome.summary())
        except TypeError:  # the record format moved on: fall back to its status
            return _one_line(f"{record.get('status')}: {record.get('reason', '')}".rstrip(": "))

    return cell


def build_rows(
    examples_dir: str | os.PathLike[str] = DEFAULT_EXAMPLES, runtime: RuntimeColumn | None = None
) -> list[Row]:
    root = Path(examples_dir)
    rows = [check_example(p, root) for p in sorted(root.rglob("*.yaml"))]
    if runtime is not None:
        for row in rows:
            row.runtime = runtime(row.path)
    return rows


def render(rows: list[Row]) -> str:
    with_runtime = any(r.runtime is not None for r in rows)
    counts: dict[str, int] = {}
    for r in rows:
        key = r.status.split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    lines = [
        "# Compatibility with Distiller's example files",
        "",
        "Generated by `scripts/compatibility.py` from the "
        f"{len(rows)} YAML files of Distiller's `examples/` folder; do not edit by hand.",
        "",
        "- **Status**: `prunecli validate FILE` without a model: `valid`, `refused: <the first problem>`, "
        "or `not a schedule: <what the file is>`.",
        "- **Model**: the model the file was written for (a thinning extension's `arch`, else the file name).",
        "- **Against model**: `prunecli validate FILE --model MODEL` on that model's parameter names "
        "(DataParallel `module.` prefixes are accepted).",
    ]
    if with_runtime:
        lines += [
            "- **Runtime**: the schedule run unchanged through the compression runtime on its model "
            "(random weights, SGD, one random batch of 2 per epoch, from epoch 0 through the last epoch of "
            "its last pruner, regularizer or extension; ImageNet models at 64x64 where their pooling "
            "allows; the word language model on one 35x2 chunk of a generated token-file corpus with "
            "truncated BPTT; Mask R-CNN on two fake 64x64 images with boxes and masks, minimising its "
            "detection losses). `ok` means every pruner with a predictable result ended at its YAML target (AGP "
            "`final_sparsity`, one-shot `desired_sparsity`, within one structure for structured pruners; "
            "threshold and random pruners are recorded) and every thinning extension removed every "
            "all-zero filter (channel) of the masked convolutions, as Distiller does, except the filters "
            "that the schedule zeroes in only some of the tensors feeding one residual add (no Leader "
            "group): no channel is zero in all of them, so they are kept, counted, and "
            "`prunecli validate` shows the Leader group to write. The column is read "
            "from `docs/compatibility-runtime.json`; refresh it with "
            "`.venv/bin/python scripts/runtime_sweep.py --write docs/compatibility-runtime.json` "
            "(`--only REGEX` to rerun some files), then run this script with `--write`.",
        ]
    lines += ["", "Summary: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + "."]
    if with_runtime:
        runtime_counts: dict[str, int] = {}
        for r in rows:
            key = (r.runtime or "-").split(":")[0]
            runtime_counts[key] = runtime_counts.get(key, 0) + 1
        lines.append("Runtime: " + ", ".join(f"{n} {k}" for k, n in sorted(runtime_counts.items())) + ".")
    lines.append("")
    header = ["File", "Status", "Model", "Against model"] + (["Runtime"] if with_runtime else [])
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for r in rows:
        cells = [f"`{r.path}`", r.status, f"`{r.model}`" if r.model else "-", r.against_model]
        if with_runtime:
            cells.append(r.runtime or "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def generate(
    examples_dir: str | os.PathLike[str] = DEFAULT_EXAMPLES, runtime: RuntimeColumn | None = None
) -> str:
    """The Markdown text; ``runtime`` defaults to the committed runtime JSON when present."""
    return render(build_rows(examples_dir, runtime if runtime is not None else runtime_from_json()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", default=str(DEFAULT_EXAMPLES), help="the Distiller examples directory")
    parser.add_argument("--write", action="store_true", help=f"write {DEFAULT_OUTPUT.relative_to(REPO_ROOT)}")
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed file differs")
    args = parser.parse_args(argv)
    text = generate(args.examples)
    if args.check:
        current = DEFAULT_OUTPUT.read_text(encoding="utf-8") if DEFAULT_OUTPUT.exists() else ""
        if current != text:
            print(f"{DEFAULT_OUTPUT} is stale: run scripts/compatibility.py --write", file=sys.stderr)
            return 1
        return 0
    if args.write:
        DEFAULT_OUTPUT.write_text(text, encoding="utf-8")
        print(f"wrote {DEFAULT_OUTPUT}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
