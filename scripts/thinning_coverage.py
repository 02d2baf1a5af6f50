"""Regenerate docs/thinning-coverage.md: zero half of every prunable group, thin, verify, measure.

Usage: python scripts/thinning_coverage.py [--output docs/thinning-coverage.md] [--only NAME ...]

With ``--only`` the other models' rows are kept from the existing output file, so a few models
can be refreshed without rerunning every one (``--only none`` just re-renders the file). timm models are covered when timm is installed.

Each model is built with random weights (no downloads); for every prunable channel group the
same random half of the channels is zeroed in all its producers, then the model is thinned and
its eval-mode output compared with the zeroed model's. Times are wall-clock on this machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from prunecli.errors import PruneCliError

# the zeroing helper is shared with the thinning tests, which live outside the package
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(1, ROOT)  # bench.peers: Torch-Pruning's side, as the benchmarks call it
from support.synthetic import exercise  # noqa: E402

#: models whose LayerNorm channels are pruned in the second table (prune_normalized), input side
NORMALIZED = [("convnext_tiny", 64), ("vit_b_16", 224), ("swin_t", 64)]
NORMALIZED_BEGIN = "<!-- normalized table: begin -->"
NORMALIZED_END = "<!-- normalized table: end -->"

# torchvision models and the input side used (small where the architecture allows)
TORCHVISION = [
    ("resnet18", 64),
    ("resnet50", 64),
    ("resnext50_32x4d", 64),
    ("wide_resnet50_2", 64),
    ("vgg16_bn", 64),
    ("alexnet", 64),
    ("mobilenet_v2", 64),
    ("mobilenet_v3_small", 64),
    ("efficientnet_b0", 64),
    ("mnasnet1_0", 64),
    ("regnet_y_400mf", 64),
    ("densenet121", 64),
    ("googlenet", 64),
    ("inception_v3", 299),
    ("shufflenet_v2_x1_0", 64),
    ("squeezenet1_0", 64),
    ("convnext_tiny", 64),
    ("swin_t", 64),
    ("vit_b_16", 224),
]
# timm models (built through the timm:NAME model source): small variants of popular families
TIMM = [
    ("resnet18", 64),
    ("efficientnet_b0", 64),
    ("convnext_atto", 64),
    ("vit_tiny_patch16_224", 224),
]
TIMING_MODEL = ("resnet50", 224)
SOURCES = ("zoo", "torchvision", "timm")
#: zoo families that are image classifiers (the coverage feeds images and compares logits)
CLASSIFIER_FAMILIES = ("digits", "mnist", "cifar", "imagenet")


def _zoo() -> list[tuple[str, tuple[int, ...]]]:
    try:
        from prunecli.models import available_models, default_input_shape
        from prunecli.models.spec import parse_spec
    except ImportError:
        return []
    from prunecli.models import ZOO

    return [
        (n, default_input_shape(n))
        for n in available_models()
        if parse_spec(n).kind == "zoo" and ZOO[n].family in CLASSIFIER_FAMILIES
    ]


def _has_timm() -> bool:
    import importlib.util

    return importlib.util.find_spec("timm") is not None


def _build(source: str, name: str):
    torch.manual_seed(0)
    if source in ("zoo", "timm"):
        from prunecli.models import create_model

        return create_model(name if source == "zoo" else f"timm:{name}")[0]
    import torchvision

    kwargs = {"init_weights": False} if name in ("googlenet", "inception_v3") else {}
    return getattr(torchvision.models, name)(weights=None, **kwargs)


#: artefact formats every thinned model is exported to and verified in (column header -> format)
EXPORT_FORMATS = {"ONNX": "onnx", "exported program": "exported-program"}


def export_thinned(model: torch.nn.Module, example: torch.Tensor) -> dict[str, str]:
    """Export the thinned model to each format and verify it in its runtime: "ok" or the reason it cannot."""
    import tempfile

    from prunecli.export import export_model

    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="coverage-export-") as tmp:
        for header, fmt in EXPORT_FORMATS.items():
            try:
                report = export_model(model, example, os.path.join(tmp, f"m.{fmt}"), format=fmt)
                out[header] = f"ok ({report.max_error:.0e})"
            except PruneCliError as exc:
                out[header] = exc.message.replace("|", "/").replace("\n", " ")[:200]
            except Exception as exc:  # reported in the table, not hidden
                out[header] = f"FAILED {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    return out


def run_one(source: str, name: str, shape: tuple[int, ...], export: bool = True) -> dict:
    row: dict = {"source": source, "model": name, "input": "x".join(str(d) for d in shape[1:])}
    try:
        model = _build(source, name)
        torch.manual_seed(1)
        example = torch.randn(shape)
        result = exercise(model, example, 0.5, seed=0)
        row.update(result)
        row["status"] = (
            "ok" if result["output_mismatch"] is None else f"MISMATCH: {result['output_mismatch']}"
        )
        if export:
            row["export"] = export_thinned(model, example)
    except PruneCliError as exc:
        row["status"] = f"{exc.kind}: {exc.message}"
    except Exception as exc:  # reported, not hidden: the table shows it as a failure
        row["status"] = f"FAILED {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    return row


def time_reference() -> dict | None:
    """Best of three: analysis, thinning without verification, and the verification itself."""
    from support.synthetic import zero_channels

    from prunecli.graph import build_dependency_graph
    from prunecli.thinning import thin_model

    name, side = TIMING_MODEL
    x = torch.randn(1, 3, side, side)
    best: dict[str, float] = {}
    try:
        for _ in range(3):
            for verify in (False, True):
                model = _build("torchvision", name).eval()
                t0 = time.perf_counter()
                graph = build_dependency_graph(model, x)
                t1 = time.perf_counter()
                zero_channels(model, graph, 0.5)
                t2 = time.perf_counter()
                thin_model(model, x, graph=graph, verify=verify)
                t3 = time.perf_counter()
                key = "thin_verified_seconds" if verify else "thin_seconds"
                best["graph_seconds"] = min(best.get("graph_seconds", 1e9), t1 - t0)
                best[key] = min(best.get(key, 1e9), t3 - t2)
    except PruneCliError:
        return None
    return best


def _m(n: int | None, unit: float) -> str:
    return "" if n is None else f"{n / unit:,.2f}"


def _machine() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    cpu = " ".join(part for part in (platform.machine(), platform.processor()) if part)
    return (
        f"{cpu} ({os.cpu_count()} CPUs, shared; load average "
        f"{load[0]:.1f} when the run started), Python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch thread(s)"
    )


def render(rows: list[dict], timing: dict | None, machine: str, started: str) -> str:
    ok = sum(1 for r in rows if r["status"] == "ok")
    exported = {
        h: sum(1 for r in rows if r.get("export", {}).get(h, "").startswith("ok")) for h in EXPORT_FORMATS
    }
    lines = [
        "# Thinning coverage",
        "",
        "Generated by `scripts/thinning_coverage.py`; do not edit by hand.",
        "",
        "For each model (random weights, no downloads) the same random half of the channels of every "
        "prunable group is zeroed in all the group's producers; the model is then thinned by "
        "`thin_model` and its eval-mode outputs and classifier input features compared with the zeroed "
        "model's (tolerance relative to how much each varies between two random inputs; see "
        "thinning.md, Verification: *ok* means verified on at least one of them, except the deep plain "
        "VGGs for CIFAR, whose classifier input ignores the input at initialisation). MACs follow `prunecli.report.compute` (Distiller's definition plus attention, one sample at the listed "
        "input size). Times are wall-clock: dependency analysis, then `thin_model` (plan, slicing and "
        "the verification forward pass). The thinned model is then exported by `prunecli.export.export_model` "
        "to ONNX (opset 18, run by ONNX Runtime) and to a `torch.export` exported program, each verified "
        "on fresh random inputs against the PyTorch model (tolerance 1e-4 relative to the output scale; "
        "the largest difference is shown) -- or the reason it cannot be.",
        "",
        f"Machine: {machine}. Run started {started}. **{ok} of {len(rows)} models thinned and verified**; "
        + ", ".join(f"{n} exported to {h} and verified" for h, n in exported.items())
        + ".",
        "",
        "| model | source | input | status | prunable groups | removed channels | params before (M) | params after (M) | MACs before (M) | MACs after (M) | analysis s | thin s | "
        + " | ".join(EXPORT_FORMATS)
        + " |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + "---|" * len(EXPORT_FORMATS),
    ]
    for r in rows:
        if "line" in r:  # kept from the previous output (--only)
            lines.append(r["line"])
            continue
        groups = f"{r['prunable_groups']}/{r['groups']}" if "groups" in r else ""
        exports = " | ".join(r.get("export", {}).get(h, "") for h in EXPORT_FORMATS)
        lines.append(
            f"| {r['model']} | {r['source']} | {r['input']} | {r['status']} | {groups} | "
            f"{r.get('removed_channels', '')} | {_m(r.get('params_before'), 1e6)} | {_m(r.get('params_after'), 1e6)} | "
            f"{_m(r.get('macs_before'), 1e6)} | {_m(r.get('macs_after'), 1e6)} | "
            f"{r['graph_seconds']:.2f} | {r['thin_seconds']:.2f} | {exports} |"
            if "graph_seconds" in r
            else f"| {r['model']} | {r['source']} | {r['input']} | {r['status']} | | | | | | | | | {exports} |"
        )
    if timing is not None:
        lines += [
            "",
            f"Timing reference (best of 3): {TIMING_MODEL[0]} at {TIMING_MODEL[1]}x{TIMING_MODEL[1]}, "
            f"50 % of every group zeroed: dependency analysis {timing['graph_seconds']:.2f} s, thinning "
            f"without verification {timing['thin_seconds']:.2f} s, thinning with verification "
            f"{timing['thin_verified_seconds']:.2f} s (two forward passes at that size).",
        ]
    lines += [
        "",
        "Groups that are never pruned (model input/output, channels normalised by LayerNorm, channel "
        "shuffles, attention internals) are counted in the second number of *prunable groups*; "
        "`prunecli deps MODEL --all` lists each with its reason.",
        "",
        "Rows with source *timm* are built through the `timm:NAME` model source (optional extra, "
        "`pip install 'prunecli[timm]'`). timm's `efficientnet_*` normalise with a fused "
        "BatchNorm+activation layer that calls `batch_norm` as a function; the dependency graph models "
        "that call like the BatchNorm module, so the same groups are prunable as in torchvision's "
        "`efficientnet_b0` and the thinned models have the same size.",
        "",
    ]
    return "\n".join(lines)


def previous_rows(path: str) -> list[dict]:
    """The table rows of an earlier output, as ``{model, source, status, line}``."""
    if not os.path.exists(path):
        return []
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) > 4 and cells[1] in SOURCES:
                exports = dict(zip(EXPORT_FORMATS, cells[-len(EXPORT_FORMATS) :]))
                rows.append(
                    {"model": cells[0], "source": cells[1], "status": cells[3], "export": exports,
                     "line": line.rstrip("\n")}
                )  # fmt: skip
    return rows


def merge_rows(old: list[dict], new: list[dict], order: list[tuple[str, str]]) -> list[dict]:
    """New rows replace old ones of the same model and source; the result follows ``order``."""
    by_key = {(r["source"], r["model"]): r for r in old}
    by_key.update({(r["source"], r["model"]): r for r in new})
    return [by_key[k] for k in order if k in by_key]


def normalized_row(name: str, side: int) -> dict:
    """One model at 50 % of every group: exact, with LayerNorm channels pruned, and Torch-Pruning."""
    from prunecli.report.compute import total_macs

    row: dict = {"model": name, "input": f"3x{side}x{side}"}
    x = torch.randn(1, 3, side, side)
    for key, normalized in (("exact", False), ("normalized", True)):
        try:
            model = _build("torchvision", name)
            torch.manual_seed(1)
            row[key] = exercise(model, x, 0.5, seed=0, prune_normalized=normalized)
        except PruneCliError as exc:
            row[key] = {"error": f"{exc.kind}: {exc.message}"}
    from bench.normalized import tp_in_child  # Torch-Pruning in a memory-limited child process

    dense = _build("torchvision", name).eval()
    before = (sum(p.numel() for p in dense.parameters()), total_macs(dense, x))
    outcome = tp_in_child(dense, x)
    if isinstance(outcome, tuple):
        row["tp"] = {"params_ratio": outcome[1] / before[0], "macs_ratio": outcome[2] / before[1]}
    else:  # a peer's failure is a result (Torch-Pruning fails on swin_t)
        row["tp"] = {"error": outcome}
    return row


def _ratios(result: dict) -> tuple[str, str]:
    if "error" in result:
        return result["error"], ""
    return (
        f"{result['params_after'] / result['params_before']:.2f}",
        f"{result['macs_after'] / result['macs_before']:.2f}",
    )


def render_normalized(rows: list[dict], machine: str, started: str) -> str:
    lines = [
        NORMALIZED_BEGIN,
        "",
        "## LayerNorm channels pruned",
        "",
        "Half of every prunable group zeroed as above, thinned once exactly (channels a LayerNorm "
        "normalises kept) and once with `prune_normalized=True` (those channels pruned too, attention "
        "heads with the embedding); Torch-Pruning: `BasePruner` + `MagnitudeImportance(p=1)` at "
        "`pruning_ratio=0.5`, classifier ignored. Ratios are after / before. *Deviation*: relative error "
        "of the classifier's input features (the outputs of torchvision's ViT are zero at initialisation).",
        "",
        f"Machine: {machine}. Run started {started}.",
        "",
        "| model | input | LayerNorm channels pruned (groups) | params ratio, exact | params ratio, LayerNorm channels pruned | "
        "params ratio, Torch-Pruning | MACs ratio, exact | MACs ratio, LayerNorm channels pruned | "
        "MACs ratio, Torch-Pruning | deviation |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        exact_p, exact_m = _ratios(r["exact"])
        norm_p, norm_m = _ratios(r["normalized"])
        tp = r["tp"]
        tp_p, tp_m = (
            (tp["error"], "") if "error" in tp else (f"{tp['params_ratio']:.2f}", f"{tp['macs_ratio']:.2f}")
        )
        check = r["normalized"].get("verification") or {}
        features = next((c for c in check.get("comparisons", []) if c["name"] == "features"), {})
        groups = r["normalized"].get("normalized_groups", "")
        deviation = f"{features['relative_error']:.3f}" if features.get("relative_error") is not None else ""
        lines.append(
            f"| {r['model']} | {r['input']} | {groups} | {exact_p} | {norm_p} | {tp_p} | "
            f"{exact_m} | {norm_m} | {tp_m} | {deviation} |"
        )
    lines += ["", NORMALIZED_END, ""]
    return "\n".join(lines)


def splice_normalized(path: str, section: str) -> None:
    """Replace the normalized table in ``path`` (or append it), leaving the rest of the page as it is."""
    text = Path(path).read_text(encoding="utf-8") if os.path.exists(path) else ""
    if NORMALIZED_BEGIN in text and NORMALIZED_END in text:
        head, rest = text.split(NORMALIZED_BEGIN, 1)
        tail = rest.split(NORMALIZED_END, 1)[1].lstrip("\n")
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.path.join("docs", "thinning-coverage.md"))
    parser.add_argument("--only", nargs="*", help="only these model names")
    parser.add_argument("--no-export", action="store_true", help="skip the ONNX / exported-program columns")
    parser.add_argument(
        "--normalized-only",
        action="store_true",
        help="regenerate only the LayerNorm-channels table, in place",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = _machine()
    todo = (
        [("zoo", n, s) for n, s in _zoo()]
        + [("torchvision", n, (1, 3, side, side)) for n, side in TORCHVISION]
        + [("timm", n, (1, 3, side, side)) for n, side in TIMM if _has_timm()]
    )
    order = [(source, name) for source, name, _ in todo]
    normalized = [normalized_row(n, side) for n, side in NORMALIZED if not args.only or n in args.only]
    if args.normalized_only:
        splice_normalized(args.output, render_normalized(normalized, machine, started))
        return 0
    if args.only:
        todo = [t for t in todo if t[1] in args.only]
    rows = []
    for source, name, shape in todo:
        t0 = time.perf_counter()
        rows.append(run_one(source, name, shape, export=not args.no_export))
        print(
            f"{name:32s} {rows[-1]['status'][:60]:60s} {time.perf_counter() - t0:6.1f}s",
            file=sys.stderr,
            flush=True,
        )
    if args.only:
        rows = merge_rows(previous_rows(args.output), rows, order)
    timing = time_reference()
    previous = Path(args.output).read_text(encoding="utf-8") if os.path.exists(args.output) else ""
    with open(args.output, "w", encoding="utf-8") as fh:
        fh.write(render(rows, timing, machine, started))
    if normalized:
        splice_normalized(args.output, render_normalized(normalized, machine, started))
    elif NORMALIZED_BEGIN in previous and NORMALIZED_END in previous:  # --only without those models: keep it
        kept = previous.split(NORMALIZED_BEGIN, 1)[1].split(NORMALIZED_END, 1)[0]
        splice_normalized(args.output, NORMALIZED_BEGIN + kept + NORMALIZED_END + "\n")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
