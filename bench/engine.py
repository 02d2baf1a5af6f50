"""Benchmarks 6 and 7: the pruning engine's per-step cost, and its accuracy at half the MACs.

Overhead: training-step CPU time of resnet56_cifar (batch 64) with native engine entries, against
the unmasked step: element L1 (a magnitude metric: masks are computed at the epoch's start and
only re-applied per step) and the gradient-accumulating metrics Taylor (filters) and movement
(elements), which add one ``w * grad`` product per pruned tensor after every backward pass.

Accuracy: resnet_digits on digits, 3 seeds, the accuracy benchmark's epoch plan; every method
removes half of the model's MACs: prunecli FPGM, Taylor and L1 on coupled channel groups with a
global allocation (and L1 with a uniform one), AGP to ``objective: {kind: macs, fraction: 0.5}``
then thinned; Torch-Pruning's GroupNormImportance, TaylorImportance and FPGMImportance at the
channel ratio that removes half the MACs, stepped along the same AGP targets; NNI's L1NormPruner,
FPGMPruner and TaylorPruner (dependency groups + ModelSpeedup) the same way, in NNI's own
environment (:mod:`bench.peers.nni_engine`).
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable

import torch
from torch import nn

from bench import models, ours
from bench.accuracy import Method, Plan, _plan, top1, train_method
from bench.context import Context
from bench.harness import CPU, alternate, timed
from bench.peers import nni_side, tp_side
from bench.results import (
    NOT_INSTALLED,
    Section,
    Table,
    Target,
    Unavailable,
    count,
    progress,
    ratio,
    seconds,
    short_error,
)
from bench.trainers import PlainStep, ScheduledStep, sgd

LEVEL = 0.5
UNMASKED = "unmasked"
OVERHEAD_VARIANTS: dict[str, tuple[str, str]] = {
    "engine element L1 (magnitude)": ("element", "l1"),
    "engine filters Taylor (gradients)": ("filters", "taylor"),
    "engine element movement (gradients)": ("element", "movement"),
}
GRADIENT_METRICS = ("taylor", "movement")


def native_schedule_text(
    names: list[str],
    target: str,
    metric: str,
    *,
    allocation: str = "uniform",
    objective: str = "",
    policy: str = "",
) -> str:
    """One native entry over ``names`` (weights objective at LEVEL unless ``objective`` is given)."""
    weights = "\n".join(f"      - {n}" for n in names)
    level = objective or f"    sparsity: {LEVEL}\n"
    return (
        "version: 1\npruners:\n  engine:\n"
        f"    target: {target}\n    metric: {metric}\n    allocation: {allocation}\n{level}"
        f"    weights:\n{weights}\n"
        "policies:\n  - pruner:\n      instance_name: engine\n" + (policy or "    epochs: [0]\n")
    )


def run_overhead(context: Context) -> Section:
    settings = context.settings
    section = Section(
        "engine-overhead",
        "Pruning engine: per-step overhead",
        f"CPU time per training step of `{settings.hook_model}` (batch {settings.hook_batch}, "
        f"{settings.threads} thread(s), SGD momentum 0.9) with one native engine entry over every "
        f"convolution at {LEVEL:.0%} sparsity, against the same loop unmasked. "
        f"{settings.hook_rounds} rounds, order rotating; ratio = median over rounds of (variant / unmasked).",
    )
    table = Table(
        "Per-step time with engine masks",
        ["variant", "median step", "ratio to unmasked", "range over rounds"],
    )
    section.tables.append(table)
    base = models.build(settings.hook_model)
    names = models.conv_weight_names(base)
    x = models.example_input(32, settings.hook_batch)
    with torch.no_grad():
        classes = base.eval()(x[:1]).shape[1]
    y = torch.randint(0, classes, (settings.hook_batch,), generator=torch.Generator().manual_seed(1))
    steppers: dict[str, Callable] = {}
    m = copy.deepcopy(base)
    steppers[UNMASKED] = PlainStep(m, sgd(m))
    for name, (target, metric) in OVERHEAD_VARIANTS.items():
        m = copy.deepcopy(base)
        opt = sgd(m)
        schedule = ours.load_schedule_text(native_schedule_text(names, target, metric))
        step = ScheduledStep(m, opt, ours.build_scheduler(schedule, m, opt, example_input=x[:1]), 10**6)
        step.begin_epoch(0)
        steppers[name] = step

    def variant(step: Callable) -> Callable[[], float]:
        return lambda: (
            timed(lambda: [step(x, y) for _ in range(settings.hook_steps)], CPU) / settings.hook_steps
        )

    stats = alternate(
        {n: variant(s) for n, s in steppers.items()}, baseline=UNMASKED, rounds=settings.hook_rounds
    )
    for name in steppers:
        s = stats[name]
        if not s.ok:
            table.add(name, "failed", "n/a", s.error or "")
            continue
        lo, hi = s.ratio_range if name != UNMASKED else (1.0, 1.0)
        table.add(name, seconds(s.median), ratio(s.ratio if name != UNMASKED else 1.0), f"{lo:.2f}-{hi:.2f}")
    for name, (_, metric) in OVERHEAD_VARIANTS.items():
        limit = 1.10 if metric in GRADIENT_METRICS else 1.05
        r = stats[name].ratio
        section.targets.append(
            Target(
                f"{name} <= {limit:.2f}x unmasked",
                ratio(r),
                None if r is None else r <= limit,
                ""
                if r is None or r <= limit
                else "see the range over rounds: a busy shared machine widens it",
            )
        )
    return section


# ------------------------------------------------------------------------------------- accuracy

MODEL, DATASET, BATCH, LR = "resnet_digits", "digits", 32, 0.05
MACS_FRACTION = 0.5
DENSE = "dense"
ENGINE_METHODS: dict[str, tuple[str, str]] = {
    "prunecli FPGM, global": ("fpgm", "global"),
    "prunecli Taylor, global": ("taylor", "global"),
    "prunecli L1, global": ("l1", "global"),
    "prunecli L1, uniform": ("l1", "uniform"),
}
#: Torch-Pruning importance by label: (class name, arguments). GroupNormImportance is called
#: GroupMagnitudeImportance (p=2) since Torch-Pruning 1.5.
TP_METHODS: dict[str, tuple[str, dict]] = {
    "Torch-Pruning GroupNormImportance": ("GroupMagnitudeImportance", {"p": 2}),
    "Torch-Pruning TaylorImportance": ("TaylorImportance", {}),
    "Torch-Pruning FPGMImportance": ("FPGMImportance", {}),
}


def _engine_method(metric: str, allocation: str) -> Callable[[nn.Module, Plan, torch.Tensor], Method]:
    def build(model: nn.Module, plan: Plan, x: torch.Tensor) -> Method:
        optimizer = sgd(model, LR)
        start, end = plan.pretrain, plan.pretrain + plan.prune
        names = models.conv_weight_names(model)
        text = native_schedule_text(
            names,
            "coupled",
            metric,
            allocation=allocation,
            objective=f"    schedule: {{kind: agp, initial: 0.1}}\n    objective: {{kind: macs, fraction: {MACS_FRACTION}}}\n",
            policy=f"    starting_epoch: {start}\n    ending_epoch: {end}\n    frequency: 1\n",
        )
        text = text.replace(
            "policies:\n",
            "extensions:\n  thinner: {class: FilterRemover, thinning_func_str: remove_filters, "
            f"arch: {MODEL}, dataset: {DATASET}}}\npolicies:\n  - extension: {{instance_name: thinner}}\n"
            f"    epochs: [{end}]\n",
        )
        schedule = ours.load_schedule_text(text)
        scheduler = ours.build_scheduler(schedule, model, optimizer, example_input=x)
        step = ScheduledStep(model, optimizer, scheduler, steps_per_epoch=0)
        return Method(model, step, begin_epoch=step.begin_epoch, end_epoch=lambda e: step.end_epoch())

    return build


def _tp_channel_ratio(x: torch.Tensor) -> float:
    """The uniform channel ratio whose Torch-Pruning step removes half the MACs (bisection on a copy)."""
    from prunecli.report.compute import total_macs

    dense = total_macs(models.build(MODEL), x)
    low, high = 0.0, 0.9
    for _ in range(8):
        mid = (low + high) / 2
        model = models.build(MODEL)
        tp_side.prune(model, x, mid)
        if 1 - total_macs(model, x) / dense >= MACS_FRACTION:
            high = mid
        else:
            low = mid
    return high


def _tp_method(
    importance: str, options: dict, channel_ratio: float
) -> Callable[[nn.Module, Plan, torch.Tensor], Method]:
    def build(model: nn.Module, plan: Plan, x: torch.Tensor) -> Method:
        import warnings

        import torch_pruning as tp

        targets = plan.agp_targets()
        scale = channel_ratio / targets[-1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruner = tp.pruner.MetaPruner(
                model, x, importance=getattr(tp.importance, importance)(**options), pruning_ratio=channel_ratio,
                iterative_steps=len(targets),
                iterative_pruning_ratio_scheduler=lambda r, steps: [0.0, *[t * scale for t in targets]],
                ignored_layers=[models.classifier(model)],
            )  # fmt: skip
        method = Method(model, PlainStep(model, sgd(model, LR)))
        criterion = nn.CrossEntropyLoss()

        def begin(epoch: int) -> None:
            if epoch not in plan.prune_epochs:
                return
            if importance == "TaylorImportance":  # Taylor needs gradients of one batch
                model.zero_grad()
                criterion(model(_batch[0]), _batch[1]).backward()
            model.eval()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pruner.step()
            method.step.optimizer = sgd(model, plan.lr(epoch))

        method.begin_epoch = begin
        return method

    return build


#: NNI pruner by label -> the kind :mod:`bench.peers.nni_engine` runs (NNI 3.0 calls
#: TaylorFOWeightPruner TaylorPruner)
NNI_METHODS: dict[str, str] = {
    "NNI L1NormPruner": "l1",
    "NNI FPGMPruner": "fpgm",
    "NNI TaylorFOWeightPruner": "taylor",
}
#: a generous bound on one NNI pruner's three seeds (its own process)
NNI_TIMEOUT = 3600


def _nni_rows(table: Table, results: dict[str, list[float]], plan: Plan, settings) -> None:
    """NNI's pruners in their own environment (one process per pruner, every seed)."""
    if not settings.nni or nni_side.version() is None:
        for name in NNI_METHODS:
            table.add(name, NOT_INSTALLED if settings.nni else "skipped (--quick)", "", "", "")
        return
    layout = f"{plan.pretrain},{plan.prune},{plan.finetune},{-1 if plan.max_steps is None else plan.max_steps}"
    for name, kind in NNI_METHODS.items():
        progress(f"engine accuracy {name}, seeds {', '.join(map(str, settings.acc_seeds))}")
        try:
            out = nni_side.train_pruned(
                kind, layout, list(settings.acc_seeds), threads=settings.threads, timeout=NNI_TIMEOUT
            )
        except (Unavailable, RuntimeError) as exc:
            table.add(name, f"not available ({short_error(exc)})", "", "", "")
            continue
        scores = [out["results"][str(seed)][0] for seed in settings.acc_seeds]
        macs = out["results"][str(settings.acc_seeds[-1])][1]
        results[name] = scores
        _add_row(table, name, scores, macs)


def _add_row(table: Table, name: str, scores: list[float], macs: int) -> None:
    table.add(
        name, f"{100 * statistics.mean(scores):.2f} %", f"{100 * min(scores):.2f}-{100 * max(scores):.2f}",
        ", ".join(f"{100 * s:.2f}" for s in scores), count(macs),
    )  # fmt: skip


_batch: tuple[torch.Tensor, torch.Tensor] = (torch.zeros(0), torch.zeros(0))


def _train(build: Callable, seed: int, plan: Plan, bundle) -> tuple[float, int]:
    from prunecli.report.compute import total_macs

    global _batch
    torch.manual_seed(seed)
    model = models.build(MODEL, seed=seed)
    x = torch.zeros(1, *bundle.input_shape)
    method = build(model, plan, x)
    train_loader, _, test_loader = bundle.loaders(BATCH, 0, seed)
    _batch = next(iter(train_loader))
    train_method(method, plan, train_loader)
    return top1(method.model, test_loader), total_macs(method.model, x)


def run_accuracy(context: Context) -> Section:
    settings = context.settings
    plan = _plan(settings)
    section = Section(
        "engine-accuracy",
        "Pruning engine: accuracy at half the MACs on digits",
        f"`{MODEL}` on digits, SGD momentum 0.9, batch {BATCH}, the accuracy benchmark's plan: {plan.pretrain} "
        f"dense, {plan.prune} pruning and {plan.finetune} fine-tuning epochs; seeds "
        f"{', '.join(map(str, settings.acc_seeds))}. prunecli: one native entry over every convolution, "
        "`target: coupled` (residual-coupled filters go together), AGP from 10 % to "
        f"`objective: {{kind: macs, fraction: {MACS_FRACTION}}}`, then a FilterRemover thins the model. "
        "Torch-Pruning: `MetaPruner` with the named importance (GroupNormImportance is "
        "`GroupMagnitudeImportance(p=2)` in Torch-Pruning 1.6), the uniform channel ratio that removes half "
        "the MACs (found by bisection), stepped along the same AGP curve; Taylor gets one batch's gradients "
        "before each step. NNI: its L1NormPruner, FPGMPruner and TaylorPruner (NNI 3.0's TaylorFOWeightPruner) "
        "with dependency groups and ModelSpeedup, in NNI's own environment, stepped along the same AGP curve "
        "to the channel ratio that removes half the MACs (bisection); Taylor gets one batch's `(w * grad)^2`.",
    )
    table = Table(
        "Test top-1 at half the MACs", ["method", "top-1 mean", "spread (min-max)", "per seed", "MACs after"]
    )
    section.tables.append(table)
    from prunecli.data import load_dataset

    bundle = load_dataset(DATASET, seed=0)
    x = torch.zeros(1, *bundle.input_shape)
    methods: dict[str, Callable] = {
        DENSE: lambda model, plan, x: Method(model, PlainStep(model, sgd(model, LR)))
    }
    methods.update({name: _engine_method(*axes) for name, axes in ENGINE_METHODS.items()})
    if tp_side.version():
        channel_ratio = _tp_channel_ratio(x)
        methods.update(
            {name: _tp_method(imp, opts, channel_ratio) for name, (imp, opts) in TP_METHODS.items()}
        )
    else:
        for name in TP_METHODS:
            table.add(name, NOT_INSTALLED, "", "", "")
    results: dict[str, list[float]] = {}
    for name, build in methods.items():
        scores, macs = [], 0
        try:
            for seed in settings.acc_seeds:
                progress(f"engine accuracy {name}, seed {seed}")
                score, macs = _train(build, seed, plan, bundle)
                scores.append(score)
        except (Unavailable, ImportError) as exc:
            table.add(name, f"not available ({short_error(exc)})", "", "", "")
            continue
        results[name] = scores
        _add_row(table, name, scores, macs)
    _nni_rows(table, results, plan, settings)
    _accuracy_targets(section, results)
    return section


def _mean(results: dict[str, list[float]], name: str) -> float | None:
    return 100 * statistics.mean(results[name]) if name in results else None


def _accuracy_targets(section: Section, results: dict[str, list[float]]) -> None:
    pairs = [
        ("prunecli FPGM, global", "NNI FPGMPruner"),
        ("prunecli Taylor, global", "NNI TaylorFOWeightPruner"),
        ("prunecli L1, global", "NNI L1NormPruner"),
        ("prunecli FPGM, global", "Torch-Pruning GroupNormImportance"),
        ("prunecli FPGM, global", "Torch-Pruning FPGMImportance"),
        ("prunecli Taylor, global", "Torch-Pruning TaylorImportance"),
        ("prunecli L1, global", "Torch-Pruning GroupNormImportance"),
        ("prunecli L1, global", "prunecli L1, uniform"),
    ]
    for mine, other in pairs:
        a, b = _mean(results, mine), _mean(results, other)
        if a is None or b is None:
            section.targets.append(Target(f"{mine} >= {other}", "not measured", None))
            continue
        spread = 100 * max(max(results[n]) - min(results[n]) for n in (mine, other))
        met = a >= b
        section.targets.append(
            Target(
                f"{mine} >= {other} (mean top-1)",
                f"{a:.2f} % vs {b:.2f} %",
                met,
                "" if met else ("within the seed-to-seed spread" if b - a <= spread else ""),
            )
        )
