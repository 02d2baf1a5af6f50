"""Runs inside NNI's own environment: the engine accuracy benchmark's NNI rows.

For each seed, ``resnet_digits`` trains on digits with the benchmark's plan (the same epochs,
learning rates and batches as prunecli's and Torch-Pruning's rows, through
:func:`bench.accuracy.train_method`); at every pruning epoch NNI's pruner (L1NormPruner,
FPGMPruner or TaylorPruner, NNI 3.0's TaylorFOWeightPruner) masks the convolutions with
dependency groups (``auto_set_denpendency_group_ids``) and ModelSpeedup removes the channels,
stepping along the same AGP curve up to the channel ratio that removes half of the MACs that
way (found by bisection here, on an untrained copy). Taylor collects one batch's ``(w * grad)^2``
before each step (an evaluator with learning rate 0, so the weights do not move). Prints one
JSON object on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("l1", "fpgm", "taylor")


def _nni() -> dict[str, Any]:
    with contextlib.redirect_stdout(io.StringIO()):
        import nni
        from nni.compression import TorchEvaluator
        from nni.compression.pruning import FPGMPruner, L1NormPruner, TaylorPruner
        from nni.compression.speedup import ModelSpeedup
        from nni.compression.utils import auto_set_denpendency_group_ids
    return {
        "nni": nni,
        "evaluator": TorchEvaluator,
        "l1": L1NormPruner,
        "fpgm": FPGMPruner,
        "taylor": TaylorPruner,
        "speedup": ModelSpeedup,
        "groups": auto_set_denpendency_group_ids,
    }


def prune_step(
    api: dict[str, Any], model: nn.Module, x: torch.Tensor, kind: str, ratio: float, batch: Any
) -> None:
    """One NNI pruning step at ``ratio`` of every convolution's channels, then ModelSpeedup (in place)."""
    if ratio <= 0:
        return
    model.eval()
    config = api["groups"](model, [{"op_types": ["Conv2d"], "sparse_ratio": ratio}], x)
    with contextlib.redirect_stdout(io.StringIO()):
        if kind == "taylor":
            pruner = api["taylor"](model, config, _evaluator(api, batch, model), training_steps=1)
            _, masks = pruner.compress()
        else:
            pruner = api[kind](model, config)
            _, masks = pruner.compress()
        pruner.unwrap_model()
        model.eval()
        api["speedup"](model, x, masks, graph_module=torch.fx.symbolic_trace(model)).speedup_model()


def _evaluator(api: dict[str, Any], batch: Any, model: nn.Module) -> Any:
    """A TorchEvaluator that runs ``batch`` through the model at learning rate 0 (gradients only)."""

    def training_step(data: Any, net: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        return F.cross_entropy(net(data[0]), data[1])

    def training_func(net, optimizers, step, lr_schedulers=None, max_steps=None, max_epochs=None, *a, **k):
        net.train()
        for _ in range(max_steps or 1):
            optimizers.zero_grad()
            step(batch, net).backward()
            optimizers.step()

    optimizer = api["nni"].trace(torch.optim.SGD)(model.parameters(), lr=0.0)
    return api["evaluator"](training_func, optimizer, training_step)


def step_ratios(targets: list[float], ratio: float) -> list[float]:
    """Per-step ratios of the remaining channels so the removed fraction follows ``targets``
    (the AGP curve) scaled to end at ``ratio``."""
    goals = [t * ratio / targets[-1] for t in targets]
    return [1 - (1 - goal) / (1 - before) for before, goal in zip([0.0, *goals[:-1]], goals)]


def channel_ratio(
    api: dict[str, Any], model_name: str, x: torch.Tensor, fraction: float, targets: list[float]
) -> float:
    """The final channel ratio whose NNI L1 steps along ``targets`` remove ``fraction`` of the MACs.

    Bisection on an untrained copy: the channel counts depend only on the ratios (each layer of a
    dependency group loses the same number), so the steps' rounding is counted as in training.
    """
    from bench import models
    from prunecli.report.compute import total_macs

    dense = total_macs(models.build(model_name), x)
    low, high = 0.0, 0.9
    for _ in range(7):
        mid = (low + high) / 2
        model = models.build(model_name)
        for step in step_ratios(targets, mid):
            prune_step(api, model, x, "l1", step, None)
        if 1 - total_macs(model, x) / dense >= fraction:
            high = mid
        else:
            low = mid
    return high


def method_builder(api: dict[str, Any], kind: str, ratio: float):
    """A bench Method whose pruning epochs step NNI along the plan's AGP curve up to ``ratio``."""
    from bench.accuracy import Method
    from bench.engine import LR
    from bench.trainers import PlainStep, sgd

    def build(model: nn.Module, plan: Any, x: torch.Tensor) -> Any:
        from bench import engine

        steps = step_ratios(plan.agp_targets(), ratio)
        method = Method(model, PlainStep(model, sgd(model, LR)))

        def begin(epoch: int) -> None:
            if epoch not in plan.prune_epochs:
                return
            prune_step(api, model, x, kind, steps[plan.prune_epochs.index(epoch)], engine._batch)
            method.step.optimizer = sgd(model, plan.lr(epoch))

        method.begin_epoch = begin
        return method

    return build


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--plan", required=True, help="pretrain,prune,finetune,max_steps (-1: all)")
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--ratio", type=float, default=None, help="channel ratio (default: bisection)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    torch.set_num_threads(args.threads)

    from bench import engine
    from bench.accuracy import Plan
    from prunecli.data import load_dataset

    api = _nni()
    pretrain, prune, finetune, max_steps = (int(v) for v in args.plan.split(","))
    plan = Plan(pretrain, prune, finetune, None if max_steps < 0 else max_steps)
    bundle = load_dataset(engine.DATASET, seed=0)
    x = torch.zeros(1, *bundle.input_shape)
    ratio = args.ratio
    if ratio is None:
        ratio = channel_ratio(api, engine.MODEL, x, args.fraction, plan.agp_targets())
    build = method_builder(api, args.kind, ratio)
    results = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        top1, macs = engine._train(build, seed, plan, bundle)
        results[str(seed)] = [top1, macs]
    print(json.dumps({"nni": api["nni"].__version__, "channel_ratio": ratio, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
