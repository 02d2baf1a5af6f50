"""Benchmark 6: transformers with the channels LayerNorm normalises pruned (embedding width, heads)."""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from bench import models, ours
from bench.context import Context
from bench.peers import tp_side
from bench.results import NOT_INSTALLED, Section, Table, Target, Unavailable, count, progress, ratio, seconds

RATIO = 0.5
OURS, OURS_EXACT, TP = (
    "prunecli, LayerNorm channels pruned",
    "prunecli, exact (LayerNorm channels kept)",
    "Torch-Pruning",
)


def run(context: Context) -> Section:
    settings = context.settings
    section = Section(
        "normalized",
        "Transformers: LayerNorm channels pruned",
        f"{RATIO:.0%} of the channels of every group removed, random weights, batch-1 input, "
        f"{settings.threads} thread(s). prunecli: `build_dependency_graph(prune_normalized=...)`, each group's "
        "channels ranked by the L1 norms of its producing weights and zeroed in every producer, then "
        "`thin_model` (without its check in the timed run; a second, untimed run records the deviation). "
        "Exact keeps every channel a LayerNorm normalises. Torch-Pruning: `BasePruner` + "
        "`MagnitudeImportance(p=1)`, `pruning_ratio=0.5`, the classifier ignored, one `step()` (ViT: `num_heads` "
        "declared and `hidden_dim` set afterwards, as its ViT example does), in a child process limited to "
        f"{TP_MEMORY_GIB} GiB and {TP_TIMEOUT_S} s. One run per "
        "tool (process CPU time); parameters and MACs counted by `prunecli.report.compute` on the same input.",
    )
    for name, side in settings.norm_models:
        _one_model(section, name, side)
    return section


def _timed(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def _one_model(section: Section, name: str, side: int) -> None:
    from prunecli.report.compute import total_macs

    progress(f"normalized {name}")
    table = Table(
        f"{name}, input 1x3x{side}x{side}",
        [
            "tool",
            "time",
            "parameters",
            "params vs dense",
            "MACs",
            "MACs vs dense",
            "deviation (rel. error of features)",
        ],
    )
    section.tables.append(table)
    dense = models.build(name).eval()
    x = models.example_input(side)
    dense_params, dense_macs = models.count_params(dense), total_macs(dense, x)
    table.add("dense", "", count(dense_params), "1.00", count(dense_macs), "1.00", "")
    results: dict[str, tuple[float, int, int] | str] = {}
    for tool, normalized in ((OURS_EXACT, False), (OURS, True)):
        model = copy.deepcopy(dense)
        try:
            spent = _timed(
                lambda m=model, n=normalized: ours.prune_every_group_and_thin(
                    m, x, RATIO, prune_normalized=n, verify=False
                )
            )
        except Unavailable as exc:
            table.add(tool, str(exc), "n/a", "n/a", "n/a", "n/a", "n/a")
            continue
        checked = copy.deepcopy(dense)
        recipe = ours.prune_every_group_and_thin(checked, x, RATIO, prune_normalized=normalized)
        check = recipe.checks[-1] if recipe.checks else {}
        features = next((c for c in check.get("comparisons", []) if c["name"] == "features"), None)
        deviation = f"{features['relative_error']:.3g} ({check['status']})" if features else "n/a"
        params, macs = models.count_params(model), total_macs(model, x)
        results[tool] = (spent, params, macs)
        table.add(tool, seconds(spent), count(params), f"{params / dense_params:.2f}", count(macs),
                  f"{macs / dense_macs:.2f}", deviation)  # fmt: skip
    if tp_side.version():
        outcome = tp_in_child(dense, x)
        if isinstance(outcome, tuple):
            spent, params, macs = outcome
            results[TP] = outcome
            table.add(TP, seconds(spent), count(params), f"{params / dense_params:.2f}", count(macs),
                      f"{macs / dense_macs:.2f}", "not measured")  # fmt: skip
        else:
            results[TP] = outcome
            table.add(TP, outcome, "n/a", "n/a", "n/a", "n/a", "n/a")
    else:
        results[TP] = NOT_INSTALLED
        table.add(TP, NOT_INSTALLED, "n/a", "n/a", "n/a", "n/a", "n/a")
    _targets(section, name, results)


#: Torch-Pruning runs in a child process with this address-space limit and time: on Swin its
#: dependency graph grows without bound (observed above 8 GiB at 224x224), on a shared machine
TP_MEMORY_GIB, TP_TIMEOUT_S = 6, 300


def tp_in_child(dense: nn.Module, x: torch.Tensor) -> tuple[float, int, int] | str:
    """(CPU seconds, parameters, MACs) of Torch-Pruning's result, or why it failed."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    queue = ctx.Queue()

    def child() -> None:
        import resource

        from prunecli.report.compute import total_macs

        limit = TP_MEMORY_GIB * 2**30
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            model = copy.deepcopy(dense)
            prune = tp_side.prune_vit if hasattr(model, "hidden_dim") else tp_side.prune
            spent = _timed(lambda: prune(model, x, RATIO))
            queue.put((spent, models.count_params(model), total_macs(model, x)))
        except BaseException as exc:  # a peer's crash is a result, reported in the table
            text = str(exc).splitlines()[0][:120] if str(exc) else ""
            queue.put(f"failed: {type(exc).__name__}: {text}")

    process = ctx.Process(target=child)
    process.start()
    try:
        return queue.get(timeout=TP_TIMEOUT_S)
    except Exception:
        return f"failed: no result within {TP_TIMEOUT_S} s under a {TP_MEMORY_GIB} GiB memory limit"
    finally:
        process.join(5)
        if process.is_alive():
            process.kill()


def _targets(section: Section, name: str, results: dict) -> None:
    ours_result, tp = results.get(OURS), results.get(TP)
    if not isinstance(ours_result, tuple):
        section.targets.append(
            Target(f"{name}: parameters and MACs <= Torch-Pruning's", "prunecli did not run", None)
        )
        return
    if not isinstance(tp, tuple):
        section.targets.append(
            Target(f"{name}: parameters and MACs <= Torch-Pruning's", f"Torch-Pruning: {tp}", None)
        )
        return
    spent, params, macs = ours_result
    met = params <= tp[1] and macs <= tp[2]
    section.targets.append(
        Target(
            f"{name}: parameters and MACs <= Torch-Pruning's",
            f"params {ratio(params / tp[1])}, MACs {ratio(macs / tp[2])}",
            met,
            ""
            if met
            else "prunecli keeps whole attention heads (a head goes with its embedding channels), "
            "Torch-Pruning rounds channel counts differently",
        )
    )
    met = spent <= tp[0]
    section.targets.append(
        Target(f"{name}: time <= Torch-Pruning's", ratio(spent / tp[0]) if tp[0] else "n/a", met, ""
               if met else "one run each on a shared machine; see the thinning section's notes on where prunecli's time goes")
    )  # fmt: skip
