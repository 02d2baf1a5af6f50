"""Report and schedule plots, drawn with matplotlib's Agg canvas.

Figures are built with :class:`matplotlib.figure.Figure` directly rather than through pyplot, so
no global figure state or GUI backend is touched (safe in servers, tests and headless CI).
Every report plot is always drawn: when its data is missing the figure says so, which keeps the
HTML layout stable and makes a missing input visible instead of silently dropping a chart.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

# --------------------------------------------------------------------------- figure helpers

#: cycled so that pruners with identical targets remain distinguishable
_LINE_STYLES = ("-", "--", ":", "-.")


def _figure(width: float = 9.0, height: float = 4.0) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _no_data(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#666")
    ax.set_xticks([])
    ax.set_yticks([])


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1) :]


# --------------------------------------------------------------------------- report plots


def layer_reduction(report: dict[str, Any]) -> list[tuple[str, float, float]]:
    """Per weight tensor: % of the dense tensor removed by thinning, and % zero among the rest.

    Both are percentages of the *dense* tensor, so they stack to the layer's total reduction.
    Tensors whose dense size is unknown count as unthinned.
    """
    dense_volume = {f"{r['name']}.weight": r.get("dense_weights_volume") for r in report.get("compute") or []}
    out = []
    for r in report["sparsity_table"]["rows"]:
        dense = dense_volume.get(r["name"]) or r["nnz_dense"]
        thinned = 100.0 * (1 - r["nnz_dense"] / dense) if dense else 0.0
        masked = 100.0 * (r["nnz_dense"] - r["nnz_sparse"]) / dense if dense else 0.0
        out.append((r["name"], thinned, masked))
    return out


def plot_sparsity_bars(report: dict[str, Any]) -> bytes:
    rows = layer_reduction(report)
    fig = _figure(9, max(3.0, 0.28 * len(rows) + 1.2))
    ax = fig.add_subplot()
    ax.set_title("Per-layer weight reduction (% of the dense tensor)")
    if not rows:
        _no_data(ax, "no 2D/4D weight tensors")
        return _png(fig)
    rows = rows[::-1]
    names = [_short(n) for n, _, _ in rows]
    thinned = [t for _, t, _ in rows]
    ax.barh(names, thinned, color="#d65f5f", label="removed by thinning")
    ax.barh(names, [m for _, _, m in rows], left=thinned, color="#4878a8", label="zero (masked)")
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of the dense layer's weights")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def plot_history(report: dict[str, Any]) -> bytes:
    history = [h for h in report.get("history") or [] if h.get("epoch") is not None]
    fig = _figure()
    ax = fig.add_subplot()
    ax.set_title("Sparsity and accuracy over epochs")
    if not history:
        _no_data(ax, "no per-epoch history in this source (report a run directory)")
        return _png(fig)
    epochs = [h["epoch"] for h in history]
    for key, style in (("top1", "-o"), ("top5", "-s"), ("sparsity", "--")):
        points = [(e, h[key]) for e, h in zip(epochs, history) if h.get(key) is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], style, markersize=3, label=key)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("fraction")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _draw_agp(ax, curves: Sequence[dict[str, Any]]) -> None:
    for i, c in enumerate(curves):
        style = _LINE_STYLES[i % len(_LINE_STYLES)]
        ax.step(
            c["epochs"], c["targets"], marker="o", ls=style, where="post", markersize=3, label=c["pruner"]
        )
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("target sparsity")
    ax.set_ylim(0, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_agp(report: dict[str, Any]) -> bytes:
    curves = (report.get("schedule") or {}).get("agp") or []
    fig = _figure()
    ax = fig.add_subplot()
    ax.set_title("AGP target sparsity per pruner")
    if curves:
        _draw_agp(ax, curves)
    else:
        _no_data(ax, "no AGP pruner in the stored schedule")
    return _png(fig)


def plot_macs(report: dict[str, Any]) -> bytes:
    rows = report.get("compute") or []
    fig = _figure(9, max(3.0, 0.28 * len(rows) + 1.2))
    ax = fig.add_subplot()
    ax.set_title("MACs per layer: dense vs compressed")
    if not rows:
        _no_data(ax, "no convolution or linear layers")
        return _png(fig)
    names = [_short(r["name"]) for r in rows][::-1]
    ys = range(len(rows))
    h = 0.27
    ax.barh([y + h for y in ys], [r["dense_macs"] or 0 for r in rows][::-1], h, label="dense", color="#999")
    ax.barh(list(ys), [r["macs"] for r in rows][::-1], h, label="thinned", color="#4878a8")
    ax.barh(
        [y - h for y in ys], [r["effective_macs"] for r in rows][::-1], h, label="effective", color="#6aa56a"
    )
    ax.set_yticks(list(ys), names, fontsize=7)
    ax.set_xlabel("MACs per sample")
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def plot_pareto(report: dict[str, Any]) -> bytes:
    """Score against cost (MACs ratio, or latency under a latency budget) for every iteration of
    an iterative run: the Pareto front joined, the budget as a vertical line, the best ringed."""
    table = report.get("iterative") or {}
    cost = table.get("cost", "macs")
    rows = [
        r for r in table.get("iterations") or [] if r.get(cost) is not None and r.get("score") is not None
    ]
    fig = _figure(7, 4.2)
    ax = fig.add_subplot()
    label = "latency (ms)" if cost == "latency_ms" else "MACs (ratio to dense)"
    ax.set_title(f"Top-1 vs {label.split(' (')[0]} per iteration")
    if not rows:
        _no_data(ax, "no iteration with a score")
        return _png(fig)
    xs, ys = [r[cost] for r in rows], [100 * r["score"] for r in rows]
    colours = ["#4878a8" if r["meets_budget"] else "#c0504d" for r in rows]
    ax.scatter(xs, ys, c=colours, zorder=3)
    for r, x, y in zip(rows, xs, ys):
        ax.annotate(str(r["iteration"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    front = sorted((r[cost], 100 * r["score"]) for r in rows if r.get("pareto"))
    if front:
        ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="#6aa56a", label="Pareto front")
    best = [(r[cost], 100 * r["score"]) for r in rows if r.get("best")]
    if best:
        ax.scatter(*zip(*best), s=180, facecolors="none", edgecolors="#222", label="best", zorder=4)
    dense = table.get("dense") or {}
    if cost == "macs" and dense.get("val_top1") is not None:
        ax.scatter([1.0], [100 * dense["val_top1"]], marker="s", color="#999", label="dense", zorder=3)
    budget = str(table.get("budget") or "")
    metric, _, bound = budget.partition("<=")
    if bound and metric.strip() == cost:
        ax.axvline(float(bound), color="#999", linestyle=":", label=f"budget {budget}")
    ax.set_xlabel(label)
    ax.set_ylabel("top-1 (%), validation split")
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


#: title -> plot function; the HTML report embeds them in this order.
REPORT_PLOTS: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "Per-layer weight reduction": plot_sparsity_bars,
    "Sparsity and accuracy over epochs": plot_history,
    "AGP target curves": plot_agp,
    "MACs per layer": plot_macs,
}


# --------------------------------------------------------------------------- sensitivity


def plot_sensitivity(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> None:
    """Distiller's sensitivity.png (accuracy against sparsity, one line per parameter), top-1 and top-5."""
    fig = _figure(12, 5)
    by_param: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_param.setdefault(r["parameter"], []).append(r)
    for i, metric in enumerate(("top1", "top5")):
        ax = fig.add_subplot(1, 2, i + 1)
        for name, pts in by_param.items():
            ax.plot(
                [p["sparsity"] for p in pts],
                [p[metric] for p in pts],
                "-o",
                markersize=2,
                label=_short(name, 40),
            )
        ax.set_title(f"Pruning sensitivity ({metric})")
        ax.set_xlabel("sparsity")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    if by_param:
        ax.legend(fontsize=6, ncol=2, loc="lower left")
    fig.savefig(path, format="png", bbox_inches="tight")


# --------------------------------------------------------------------------- schedule plan

#: policy kind -> colour of its marks on the timeline
_KIND_COLOURS: dict[str, str] = {
    "pruner": "#4878a8",
    "regularizer": "#d68a3c",
    "quantizer": "#8c6bb1",
    "extension": "#d65f5f",
    "lr_scheduler": "#7f7f7f",
}


def plot_plan(plan: Sequence[Any], path: str | os.PathLike) -> None:
    """Draw a schedule's plan: which policy fires on which epoch, and each pruner's target.

    ``plan`` is :func:`prunecli.schedule.timeline.plan`'s list of ``EpochPlan``. Top panel: one
    row per policy instance, a mark per epoch it fires (coloured by kind). Bottom panel: the
    sparsity target of every pruner that has one (AGP ramps, one-shot levels), held between
    the epochs it fires.
    """
    rows: dict[tuple[str, str], list[int]] = {}
    classes: dict[str, str] = {}
    for ep in plan:
        for entry in ep.entries:
            rows.setdefault((entry.kind, entry.instance), []).append(ep.epoch)
            classes[entry.instance] = entry.class_name
    pruners = sorted({name for ep in plan for name in ep.targets})

    fig = _figure(10, 2.0 + 0.35 * max(len(rows), 1) + (3.2 if pruners else 0))
    grid = fig.add_gridspec(
        2 if pruners else 1, 1, height_ratios=[max(len(rows), 1), 8][: 2 if pruners else 1]
    )
    ax = fig.add_subplot(grid[0])
    ax.set_title("Schedule timeline")
    if not rows:
        _no_data(ax, "no policy fires in these epochs")
    else:
        labels = []
        for y, ((kind, instance), epochs) in enumerate(rows.items()):
            ax.scatter(epochs, [y] * len(epochs), marker="|", s=120, color=_KIND_COLOURS.get(kind, "#333"))
            labels.append(f"{instance} ({classes[instance]})")
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        kinds = dict.fromkeys(kind for kind, _ in rows)
        handles = [
            Line2D([], [], color=_KIND_COLOURS.get(k, "#333"), marker="|", ls="", ms=10) for k in kinds
        ]
        ax.legend(handles, list(kinds), fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.set_xlim(-0.5, max(len(plan), 1) - 0.5)
        ax.grid(axis="x", alpha=0.3)
    if pruners:
        ax2 = fig.add_subplot(grid[1], sharex=ax if rows else None)
        for i, name in enumerate(pruners):
            pts = [(ep.epoch, ep.targets[name]) for ep in plan if name in ep.targets]
            style = _LINE_STYLES[i % len(_LINE_STYLES)]  # equal targets stay visible
            ax2.step([p[0] for p in pts], [p[1] for p in pts], where="post", label=name, ls=style)
            fired = [
                (ep.epoch, e.target)
                for ep in plan
                for e in ep.entries
                if e.instance == name and e.target is not None
            ]
            ax2.plot(
                [p[0] for p in fired],
                [p[1] for p in fired],
                "o",
                markersize=3,
                color=ax2.lines[-1].get_color(),
            )
        ax2.set_title("Pruner sparsity targets")
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("target sparsity")
        ax2.set_ylim(0, 1.0)
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=7)
    else:
        ax.set_xlabel("epoch")
    fig.savefig(path, format="png", bbox_inches="tight")
