"""Quantization-aware training: 4-bit DoReFa and PACT against fp32 on digits, same epochs.

Every method trains ``resnet_digits`` from the same seed with the accuracy benchmark's epoch
count and learning-rate plan (no pruning: the pruning epochs are ordinary epochs here). The
quantizers round weights to 4 bits and ReLU outputs to 4 bits from the first step, except the
first convolution and the classifier, which stay in float as in Distiller's example schedules.
Top-1 is measured on the test split with the rounding active (the quantized model's accuracy).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch
from torch import nn

from bench import models, ours
from bench.accuracy import BATCH, DATASET, LR, MODEL, Method, Plan, _plan, top1, train_method
from bench.context import Context
from bench.results import Section, Table, Target, Unavailable, progress, short_error
from bench.trainers import PlainStep, ScheduledStep, sgd

BITS = 4
FP32, DOREFA, PACT = "fp32", f"DorefaQuantizer {BITS}-bit", f"PACTQuantizer {BITS}-bit"
CLASSES = {DOREFA: "DorefaQuantizer", PACT: "PACTQuantizer"}
#: PACT's initial clip: the largest ReLU output of this model is a few units
PACT_CLIP = 4.0


def qat_schedule_text(class_name: str, plan: Plan) -> str:
    extra = f"    act_clip_init_val: {PACT_CLIP}\n" if class_name == "PACTQuantizer" else ""
    return (
        "quantizers:\n  q:\n"
        f"    class: {class_name}\n    bits_activations: {BITS}\n    bits_weights: {BITS}\n{extra}"
        "    overrides:\n      conv1: {bits_weights: null}\n      relu: {bits_activations: null}\n"
        "      fc: {bits_weights: null}\n"
        f"policies:\n  - quantizer: {{instance_name: q}}\n    starting_epoch: 0\n    ending_epoch: {plan.total}\n"
        "    frequency: 1\n"
    )


def _fp32(model: nn.Module, plan: Plan, x: torch.Tensor) -> Method:
    return Method(model, PlainStep(model, sgd(model, LR)))


def _qat(label: str) -> Callable[[nn.Module, Plan, torch.Tensor], Method]:
    def build(model: nn.Module, plan: Plan, x: torch.Tensor) -> Method:
        optimizer = sgd(model, LR)
        schedule = ours.load_schedule_text(qat_schedule_text(CLASSES[label], plan))
        scheduler = ours.build_scheduler(schedule, model, optimizer, example_input=x)
        step = ScheduledStep(model, optimizer, scheduler, steps_per_epoch=0)
        return Method(model, step, begin_epoch=step.begin_epoch, end_epoch=lambda e: step.end_epoch())

    return build


METHODS: dict[str, Callable[[nn.Module, Plan, torch.Tensor], Method]] = {
    FP32: _fp32,
    DOREFA: _qat(DOREFA),
    PACT: _qat(PACT),
}


def train_one(name: str, seed: int, plan: Plan, bundle) -> float:
    torch.manual_seed(seed)
    model = models.build(MODEL, seed=seed)
    method = METHODS[name](model, plan, torch.zeros(1, *bundle.input_shape))
    train_loader, _, test_loader = bundle.loaders(BATCH, 0, seed)
    train_method(method, plan, train_loader)
    return top1(method.model, test_loader)


def run(context: Context) -> Section:
    settings = context.settings
    plan = _plan(settings)
    section = Section(
        "qat",
        "Quantization-aware training on digits",
        f"`{MODEL}` on the scikit-learn digits, SGD momentum 0.9, batch {BATCH}, the accuracy benchmark's "
        f"{plan.total} epochs and learning-rate plan for every method"
        + (f" (at most {plan.max_steps} steps each)" if plan.max_steps else "")
        + f". Seeds {', '.join(map(str, settings.acc_seeds))}. DoReFa and PACT from a schedule's "
        f"`quantizers:` entry: {BITS}-bit weights and {BITS}-bit ReLU outputs from the first step; the first "
        f"convolution, its ReLU and the classifier stay float (as Distiller's examples); PACT's clip starts at "
        f"{PACT_CLIP}. Top-1 on the test split with the rounding active.",
    )
    table = Table("Test top-1 after the same training budget", ["method", "top-1 mean", "spread (min-max)", "per seed"])
    section.tables.append(table)
    try:
        from prunecli.data import load_dataset

        bundle = load_dataset(DATASET, seed=0)
    except (ImportError, Unavailable) as exc:
        table.add("all", str(exc), "", "")
        return section
    results: dict[str, list[float]] = {}
    for name in METHODS:
        scores = []
        try:
            for seed in settings.acc_seeds:
                progress(f"qat {name}, seed {seed}")
                scores.append(train_one(name, seed, plan, bundle))
        except Exception as exc:  # a method failing is a result to report
            table.add(name, f"failed: {short_error(exc)}", "", "")
            continue
        results[name] = scores
        table.add(
            name, f"{100 * statistics.mean(scores):.2f} %", f"{100 * min(scores):.2f}-{100 * max(scores):.2f}",
            ", ".join(f"{100 * s:.2f}" for s in scores),
        )  # fmt: skip
    for name in (DOREFA, PACT):
        if FP32 not in results or name not in results:
            section.targets.append(Target(f"{name} within 2 points of fp32", "did not run", None))
            continue
        gap = 100 * (statistics.mean(results[FP32]) - statistics.mean(results[name]))
        section.targets.append(
            Target(
                f"{name} within 2 points of fp32 (mean top-1)",
                f"{gap:.2f} points below fp32" if gap >= 0 else f"{-gap:.2f} points above fp32",
                gap <= 2.0,
            )
        )
    return section
