"""Runs inside NNI's own environment: NNI 3.0's AGPPruner (over L1NormPruner with dependency
groups) trained on digits from the same pretrained weights as prunecli's runs for the pruning
epochs, then ModelSpeedup, then plain fine-tuning of the compact model for the remaining epochs
(NNI's documented order: the BatchNorm shift of a masked filter still feeds the next layer until
speed-up removes it, so the model is fine-tuned after speed-up).

``python -m bench.peers.nni_iterative STATE.pt RATIO EPOCHS PRUNE_EPOCHS --seed S`` prints one JSON
object: top-1 on the test split, MACs after speed-up, wall seconds. The calling side is
:func:`run`, which NNI itself never imports.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import time
import warnings
from pathlib import Path

MODEL, DATASET, BATCH = "resnet_digits", "digits", 32


def main() -> int:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("state")
    parser.add_argument("ratio", type=float)
    parser.add_argument("epochs", type=int)
    parser.add_argument("prune_epochs", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--macs-only", action="store_true", help="one-shot prune + speed-up, no training")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    torch.set_num_threads(args.threads)

    from bench.models import build
    from prunecli.data import load_dataset
    from prunecli.report.compute import total_macs

    with contextlib.redirect_stdout(io.StringIO()):
        import nni
        from nni.compression import TorchEvaluator
        from nni.compression.pruning import AGPPruner, L1NormPruner
        from nni.compression.speedup import ModelSpeedup
        from nni.compression.utils import auto_set_denpendency_group_ids

    torch.manual_seed(args.seed)
    bundle = load_dataset(DATASET, seed=0)
    train_loader, _, test_loader = bundle.loaders(BATCH, 0, args.seed)
    model = build(MODEL, seed=args.seed)
    model.load_state_dict(torch.load(args.state, weights_only=True))
    x = torch.zeros(1, *bundle.input_shape)
    began = time.perf_counter()

    def training_step(batch, model):
        inputs, targets = batch
        return torch.nn.functional.cross_entropy(model(inputs), targets)

    def training_func(model, optimizers, training_step, lr_schedulers=None, max_steps=None, max_epochs=None):
        optimizer = optimizers[0] if isinstance(optimizers, list) else optimizers
        for _ in range(max_epochs or 1):
            model.train()
            for batch in train_loader:
                optimizer.zero_grad()
                training_step(batch, model).backward()
                optimizer.step()

    config = [{"op_types": ["Conv2d"], "sparse_ratio": args.ratio}]
    with contextlib.redirect_stdout(io.StringIO()):
        groups = auto_set_denpendency_group_ids(model, config, x)
        optimizer = nni.trace(torch.optim.SGD)(
            model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4
        )
        evaluator = TorchEvaluator(training_func, optimizer, training_step)
        times = max(1, args.prune_epochs)
        interval = max(1, args.prune_epochs * len(train_loader) // times)
        if args.macs_only:
            pruner = L1NormPruner(model, groups)
            _, masks = pruner.compress()
        else:
            pruner = AGPPruner(L1NormPruner(model, groups), interval, times, evaluator=evaluator)
            _, masks = pruner.compress(max_steps=None, max_epochs=times)
        pruner.unwrap_model()
        model.eval()
        ModelSpeedup(model, x, masks, graph_module=torch.fx.symbolic_trace(model)).speedup_model()
    if args.macs_only:
        print(json.dumps({"nni": nni.__version__, "macs": total_macs(model, x)}))
        return 0
    tune = torch.optim.SGD(model.parameters(), lr=0.3 * args.lr, momentum=0.9, weight_decay=1e-4)
    training_func(model, tune, training_step, max_epochs=args.epochs - times)
    seconds = time.perf_counter() - began
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for inputs, targets in test_loader:
            correct += int((model(inputs).argmax(1) == targets).sum())
            total += len(targets)
    print(
        json.dumps(
            {
                "nni": nni.__version__,
                "top1": correct / total,
                "macs": total_macs(model, x),
                "seconds": seconds,
            }
        )
    )
    return 0


def run(
    state: Path,
    ratio: float,
    epochs: int,
    prune_epochs: int,
    seed: int,
    *,
    macs_only: bool = False,
    timeout: float = 900,
) -> dict:
    """The calling side: one NNI AGP run in NNI's interpreter; raises with NNI's last error line."""
    from bench.peers import nni_side

    cmd = [str(nni_side.python()), "-m", "bench.peers.nni_iterative", str(state), str(ratio), str(epochs)]
    cmd += [str(prune_epochs), "--seed", str(seed)] + (["--macs-only"] if macs_only else [])
    return nni_side.call(cmd, timeout)


if __name__ == "__main__":
    sys.exit(main())
