"""A single self-contained HTML page: inline CSS, plots as base64 PNG data URIs, no external URLs.

The page must open offline (attached to a CI run, mailed, archived), so nothing is fetched.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from prunecli.report.plots import REPORT_PLOTS, plot_pareto
from prunecli.report.render import (
    COMPUTE_COLUMNS,
    ITERATION_HEADERS,
    QUANTIZATION_HEADERS,
    compute_cells,
    headline_cells,
    history_columns,
    iteration_cells,
    iteration_title,
    quantization_cells,
    ratio_cells,
    sparsity_cells,
    sparsity_columns,
)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; max-width: 1180px; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.meta { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f3f5f8; } td:first-child, th:first-child { text-align: left; }
tr:last-child.total td { font-weight: bold; background: #fafafa; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 130px; }
.card .v { font-size: 1.4em; font-weight: 600; } .card .k { color: #666; font-size: 0.8em; }
figure { margin: 0; } figure img { width: 100%; border: 1px solid #eee; }
figcaption { color: #666; font-size: 0.8em; }
.row { display: flex; gap: 28px; flex-wrap: wrap; align-items: flex-start; }
.plots { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.scroll { overflow-x: auto; }
"""


def _table(headers: list[str], rows: list[list[str]], total_last: bool = False) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for i, r in enumerate(rows):
        cls = ' class="total"' if total_last and i == len(rows) - 1 else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>")
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def _card(label: str, value: Any, fmt: str = "{:.3f}") -> str:
    shown = "-" if value is None else fmt.format(value)
    return f'<div class="card"><div class="v">{html.escape(shown)}</div><div class="k">{html.escape(label)}</div></div>'


def _img(title: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
    )


def to_html(report: dict[str, Any]) -> str:
    src, model = report["source"], report["model"]
    cards = "".join(
        [
            _card("top-1", report.get("top1"), "{:.2%}"),
            _card("sparsity", report.get("sparsity"), "{:.2%}"),
            _card("params ratio", report.get("params_ratio")),
            _card("MACs ratio", report.get("macs_ratio")),
            _card("effective MACs ratio", report.get("effective_macs_ratio")),
            _card("speedup", report.get("speedup"), "{:.2f}x"),
        ]
    )
    sections = [
        f"<h1>prunecli report: {html.escape(str(model['name']))}</h1>",
        f'<p class="meta">{html.escape(str(src["path"]))} ({html.escape(src["kind"])}), '
        f"epoch {html.escape(str(src.get('epoch')))}, accuracy from "
        f"{html.escape(str(src.get('accuracy_from') or 'not available'))}, "
        f"schema v{report['schema_version']}, prunecli {html.escape(report['generator']['version'])}</p>",
        f'<div class="cards">{cards}</div>',
        '<div class="row"><div><h2>Headline</h2>',
        _table(["Metric", "Dense", "Compressed", "Ratio"], headline_cells(report)),
        "</div><div><h2>Ratios</h2>",
        _table(["Field", "Value", "Meaning"], ratio_cells(report)),
        "</div></div>",
        *(
            [
                f"<h2>{html.escape(iteration_title(report))}</h2>",
                _table(ITERATION_HEADERS, iteration_cells(report)),
                _img("Accuracy vs cost of every iteration (Pareto front)", plot_pareto(report)),
            ]
            if report.get("iterative")
            else []
        ),
        '<h2>Plots</h2><div class="plots">',
        *(_img(title, fn(report)) for title, fn in REPORT_PLOTS.items()),
        "</div>",
        *(
            ["<h2>Quantization</h2>", _table(QUANTIZATION_HEADERS, quantization_cells(report))]
            if report.get("quantization")
            else []
        ),
        "<h2>Weights sparsity</h2>",
        _table(sparsity_columns(report), sparsity_cells(report), total_last=True),
        "<h2>Compute</h2>",
        _table([h for h, _ in COMPUTE_COLUMNS], compute_cells(report)),
    ]
    cols = history_columns(report)
    if cols:
        rows = [["-" if h.get(c) is None else str(h.get(c)) for c in cols] for h in report["history"]]
        sections += ["<h2>History</h2>", _table(cols, rows)]
    text = (report.get("schedule") or {}).get("text")
    if text:
        sections += ["<h2>Schedule</h2>", f"<pre>{html.escape(text)}</pre>"]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>prunecli report: {html.escape(str(model['name']))}</title>"
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )
