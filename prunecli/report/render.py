"""Text renderings of a report dict: rich terminal tables, Markdown and JSON.

The row layouts live here once (as data) and are shared with the HTML renderer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from prunecli.report.sparsity import COLUMNS, TOTAL_NAME


def _int(v: Any) -> str:
    return "-" if v is None else f"{int(v):,}"


def _bytes(v: Any) -> str:
    if v is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if v < 1024 or unit == "GiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.2f} {unit}"
        v /= 1024
    return str(v)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _ms(v: Any) -> str:
    return "-" if v is None else f"{v:.3f} ms"


#: headline row: label, key in headline.dense/compressed, formatter
HEADLINE_ROWS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("Parameters", "params", _int),
    ("Non-zero parameters", "nnz_params", _int),
    ("MACs (thinned shapes)", "macs", _int),
    ("Effective MACs (non-zero weights)", "effective_macs", _int),
    ("Weights (serialized state_dict)", "state_dict_bytes", _bytes),
    ("Checkpoint file", "file_bytes", _bytes),
    ("Latency (median)", "latency_ms", _ms),
    ("Top-1", "top1", _pct),
    ("Top-5", "top5", _pct),
]

#: flat ratio fields shown under the headline, with their meaning
RATIO_FIELDS: dict[str, str] = {
    "params_ratio": "compressed / dense parameters",
    "nnz_params_ratio": "compressed non-zero / dense parameters",
    "macs_ratio": "compressed / dense MACs",
    "effective_macs_ratio": "compressed effective / dense MACs",
    "size_ratio": "compressed / dense serialized weights",
    "latency_ratio": "compressed / dense median latency",
    "speedup": "dense / compressed median latency",
    "top1_delta": "compressed - dense top-1",
    "sparsity": "zero share of the 2D/4D weights",
}

COMPUTE_COLUMNS: list[tuple[str, str]] = [
    ("Name", "name"),
    ("Type", "type"),
    ("Attrs", "attrs"),
    ("IFM", "ifm"),
    ("OFM", "ofm"),
    ("Weights volume", "weights_volume"),
    ("Dense MACs", "dense_macs"),
    ("MACs", "macs"),
    ("Effective MACs", "effective_macs"),
]


def headline_cells(report: dict[str, Any]) -> list[list[str]]:
    dense, comp = report["headline"]["dense"], report["headline"]["compressed"]
    rows = []
    for label, key, fmt in HEADLINE_ROWS:
        d, c = dense.get(key), comp.get(key)
        ratio = f"{c / d:.4f}" if isinstance(c, int | float) and isinstance(d, int | float) and d else "-"
        rows.append([label, fmt(d), fmt(c), ratio])
    return rows


def latency_cells(report: dict[str, Any]) -> list[list[str]]:
    """Deployment latency rows (runtime, BatchNorm, dense, compressed, speed-up or why not measured)."""
    rows = []
    for r in report.get("latency_table") or []:
        speed = "-" if r.get("speedup") is None else f"{r['speedup']:.2f}x"
        rows.append(
            [r["runtime"], r["batchnorm"], _ms(r["dense_ms"]), _ms(r["compressed_ms"]), r["note"] or speed]
        )
    return rows


LATENCY_HEADERS = ["Runtime", "BatchNorm", "Dense", "Compressed", "Speed-up"]


def ratio_cells(report: dict[str, Any]) -> list[list[str]]:
    return [[k, "-" if report.get(k) is None else f"{report[k]:.4f}", v] for k, v in RATIO_FIELDS.items()]


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.5f}"
    if isinstance(v, list | tuple):
        return "(" + ", ".join(str(x) for x in v) + ")"
    return "-" if v is None else str(v)


def sparsity_columns(report: dict[str, Any]) -> list[str]:
    """Distiller's columns, and a Bits column when the model is quantized."""
    return [*COLUMNS, "Bits"] if report.get("quantization") else list(COLUMNS)


def sparsity_cells(report: dict[str, Any]) -> list[list[str]]:
    """Rows in Distiller's column order (then Bits when quantized), the total row last."""
    from prunecli.report.sparsity import SparsityRow

    table = report["sparsity_table"]
    bits = bool(report.get("quantization"))
    out = []
    for r in table["rows"]:
        row = SparsityRow(**r)
        out.append([_cell(v) for v in row.cells()] + ([str(row.bits or "fp32")] if bits else []))
    t = table["total"]
    out.append([TOTAL_NAME, "-", _cell(t["nnz_dense"]), _cell(t["nnz_sparse"]), *["0.00000"] * 5,
                _cell(float(t["fine_pct"])), *["0.00000"] * 3] + (["-"] if bits else []))  # fmt: skip
    return out


QUANTIZATION_HEADERS = ["Metric", "Dense fp32", "Compressed fp32", "Compressed int8", "int8 vs fp32"]


def _top1(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def quantization_cells(report: dict[str, Any]) -> list[list[str]]:
    """Size, latency and top-1 of the dense, compressed-float and int8 models (empty: not quantized)."""
    q = report.get("quantization")
    if not q:
        return []
    size_ratio = "-" if q["int8_size_ratio"] is None else f"{q['int8_size_ratio']:.4f} of dense"
    speed = "-" if q["int8_speedup"] is None else f"{q['int8_speedup']:.2f}x speed-up"
    delta = "-" if q["int8_top1_delta"] is None else f"{100 * q['int8_top1_delta']:+.2f} points"
    layers = f"{q['int8_layers']} on int8 kernels, {q['simulated_layers']} fake-quant"
    return [
        ["Model size (tensor bytes)", _bytes(q["fp32_bytes"]), _bytes(q["pruned_bytes"]), _bytes(q["int8_bytes"]),
         size_ratio],
        ["Latency (median, BatchNorm folded)", "-", _ms(q["fp32_latency_ms"]), _ms(q["int8_latency_ms"]), speed],
        ["Top-1", "-", _top1(q["fp32_top1"]), _top1(q["int8_top1"]), delta],
        ["Layers", "-", "-", layers, "-"],
    ]  # fmt: skip


#: the compute columns that fit a terminal
TERMINAL_COMPUTE = ("Name", "Weights volume", "Dense MACs", "MACs", "Effective MACs")
#: shorter headers for the terminal
_TERMINAL_HEADERS = {"Weights volume": "Weights", "Effective MACs": "Eff. MACs"}
#: history columns shown in a terminal, when present
TERMINAL_HISTORY = ("epoch", "top1", "top5", "val_loss", "lr", "sparsity", "nnz_params", "macs")
#: sparsity columns shown when the terminal is too narrow for Distiller's full table
NARROW_SPARSITY = ("Name", "Shape", "NNZ (sparse)", "2D (%)", "3D (%)", "Fine (%)")
FULL_TABLE_WIDTH = 170


def compute_cells(
    report: dict[str, Any], columns: list[tuple[str, str]] = COMPUTE_COLUMNS
) -> list[list[str]]:
    out = []
    for r in report["compute"]:
        out.append([_int(r[k]) if k.endswith(("macs", "volume")) else _cell(r[k]) for _, k in columns])
    return out


ITERATION_HEADERS = ["#", "Goal", "Top-1", "Weights", "Params", "MACs", "Latency", "Budget", "Pareto"]


def iteration_cells(report: dict[str, Any]) -> list[list[str]]:
    """One row per iteration of an iterative run (empty for other sources); ratios to dense."""
    table = report.get("iterative") or {}
    rows = []
    for row in table.get("iterations") or []:
        budget = "meets" if row["meets_budget"] else "over"
        if row.get("finetuned") is False:  # a search's probe, scored without fine-tuning
            budget += ", probe"
        rows.append(
            [
                str(row["iteration"]),
                _goal(row.get("goal")) or str(row.get("note") or "-"),
                _pct(row.get("score")),
                f"{row['weights']:.3f}",
                f"{row['params']:.3f}",
                f"{row['macs']:.3f}",
                _ms(row.get("latency_ms")),
                f"{budget}, best" if row.get("best") else budget,
                "yes" if row.get("pareto") else "",
            ]
        )
    return rows


def _goal(goal: str | None) -> str | None:
    """``macs <= 0.566406`` as ``macs <= 0.5664``."""
    metric, _, bound = (goal or "").partition("<=")
    try:
        return f"{metric.strip()} <= {float(bound):.4f}"
    except ValueError:
        return goal


def iteration_title(report: dict[str, Any]) -> str:
    table = report.get("iterative") or {}
    return f"Iterations (budget {table.get('budget') or 'none'}; ratios to the dense model)"


def history_columns(report: dict[str, Any]) -> list[str]:
    keys: list[str] = []
    for h in report.get("history") or []:
        keys.extend(k for k in h if k not in keys)
    return keys


def _short_cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return _int(v) if isinstance(v, int) and abs(v) >= 10000 else _cell(v)


def _narrow_sparsity(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Distiller's table cut to the columns that matter most, percentages to 2 decimals."""
    headers = [*NARROW_SPARSITY, *(["Bits"] if report.get("quantization") else [])]
    columns = sparsity_columns(report)
    idx = [columns.index(c) for c in headers]
    rows = []
    for cells in sparsity_cells(report):
        picked = [cells[i] for i in idx]
        row = [f"{float(c):.2f}" if h.endswith("(%)") else c for h, c in zip(headers, picked)]
        row[1] = row[1].strip("()").replace(", ", "x")  # (16, 3, 3, 3) -> 16x3x3x3
        rows.append(row)
    return headers, rows


# --------------------------------------------------------------------------- JSON


def _finite(obj: Any) -> Any:
    """JSON has no NaN/Infinity: such values become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(_finite(report), indent=2, allow_nan=False)


# --------------------------------------------------------------------------- terminal


def _rich_table(title: str, headers: list[str], rows: list[list[str]], numeric_from: int = 1) -> Table:
    table = Table(
        title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, collapse_padding=True
    )
    for i, h in enumerate(headers):
        # cells never wrap (headers may); the first (name) column folds past 30 characters
        widest = max((len(str(r[i])) for r in rows), default=0)
        table.add_column(
            h,
            justify="right" if i >= numeric_from else "left",
            overflow="fold",
            min_width=min(widest, 30) if i == 0 else widest,
        )
    for r in rows:
        table.add_row(*r)
    return table


def print_terminal(report: dict[str, Any], console: Console, *, full: bool = True) -> None:
    src = report["source"]
    console.print(f"[bold]Report[/] {src['path']} ({src['kind']}, model {report['model']['name']})")
    console.print(_rich_table("Headline", ["Metric", "Dense", "Compressed", "Ratio"], headline_cells(report)))
    console.print(_rich_table("Ratios", ["Field", "Value", "Meaning"], ratio_cells(report)))
    if report.get("latency_table"):
        console.print(_rich_table("Latency as deployed (CPU)", LATENCY_HEADERS, latency_cells(report), 2))
    if not full:
        return
    if report.get("iterative"):
        console.print(_rich_table(iteration_title(report), ITERATION_HEADERS, iteration_cells(report)))
    if report.get("quantization"):
        console.print(_rich_table("Quantization", QUANTIZATION_HEADERS, quantization_cells(report)))
    if console.width >= FULL_TABLE_WIDTH:
        console.print(
            _rich_table("Weights sparsity", sparsity_columns(report), sparsity_cells(report), numeric_from=2)
        )
    else:
        headers, rows = _narrow_sparsity(report)
        headers = [h.replace(" (sparse)", "").replace(" (%)", " %") for h in headers]
        title = f"Weights sparsity (all columns at {FULL_TABLE_WIDTH}+ columns or with --markdown)"
        console.print(_rich_table(title, headers, rows, numeric_from=2))
    compute_cols = [c for c in COMPUTE_COLUMNS if c[0] in TERMINAL_COMPUTE]
    console.print(
        _rich_table(
            "Compute",
            [_TERMINAL_HEADERS.get(h, h) for h, _ in compute_cols],
            compute_cells(report, compute_cols),
            numeric_from=1,
        )
    )
    cols = [c for c in TERMINAL_HISTORY if c in history_columns(report)]
    if cols:
        rows = [[_short_cell(h.get(c)) for c in cols] for h in report["history"]]
        console.print(_rich_table("History", cols, rows))


# --------------------------------------------------------------------------- Markdown


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    def esc(s: str) -> str:
        return str(s).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def to_markdown(report: dict[str, Any]) -> str:
    src = report["source"]
    parts = [
        f"# prunecli report: {report['model']['name']}",
        f"Source: `{src['path']}` ({src['kind']}); accuracy from: {src['accuracy_from'] or 'not available'}",
        "## Headline",
        _md_table(["Metric", "Dense", "Compressed", "Ratio"], headline_cells(report)),
        "## Ratios",
        _md_table(["Field", "Value", "Meaning"], ratio_cells(report)),
        "## Latency as deployed (CPU)",
        _md_table(LATENCY_HEADERS, latency_cells(report)) if report.get("latency_table") else "not measured",
        *(
            [f"## {iteration_title(report)}", _md_table(ITERATION_HEADERS, iteration_cells(report))]
            if report.get("iterative")
            else []
        ),
        *(
            ["## Quantization", _md_table(QUANTIZATION_HEADERS, quantization_cells(report))]
            if report.get("quantization")
            else []
        ),
        "## Weights sparsity",
        _md_table(sparsity_columns(report), sparsity_cells(report)),
        "## Compute",
        _md_table([h for h, _ in COMPUTE_COLUMNS], compute_cells(report)),
    ]
    rounding = [
        [
            row["instance"],
            str(row["round_to"]),
            r["tensor"],
            str(r["width"]),
            str(r["kept"]),
            "yes" if r["multiple"] else "no",
        ]
        for row in report.get("channel_rounding") or []
        for r in row["layers"]
    ]
    if rounding:
        headers = ["Pruner", "round_to", "Tensor", "Dense width", "Kept", "Multiple"]
        parts += ["## Channel rounding", _md_table(headers, rounding)]
    cols = history_columns(report)
    if cols:
        parts += ["## History", _md_table(cols, [[_cell(h.get(c)) for c in cols] for h in report["history"]])]
    return "\n\n".join(parts) + "\n"
