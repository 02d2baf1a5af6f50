"""Runs inside NNI's own environment: NNI 3.0's QATQuantizer on a prunecli checkpoint's model.

Usage: ``python -m bench.peers.nni_quant CHECKPOINT --threads N --batch B --epochs E --runs R``.
Loads the (pruned, thinned) model with ``prunecli.load_model``, fine-tunes it with NNI's
quantization-aware training (8-bit weights, inputs and outputs of every Conv2d and Linear) on the
digits training split for E epochs, then reports on stdout, as one JSON object: test top-1, the
bytes of the model's tensors as NNI leaves it (float weights plus its scale / zero-point / range
buffers; shared tensors counted once) and the median latency of B-sample batches, with the float
model's latency measured the same way in the same process. NNI's quantizers simulate quantization:
the model stays a float model with fake-quant wrappers (its int8 deployment path is TensorRT, on
GPUs), so size and latency are reported as they are.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import statistics
import sys
import time
import warnings

import torch

LR = 0.005


def _bytes(model: torch.nn.Module) -> int:
    seen: set[int] = set()
    total = 0
    for tensor in model.state_dict().values():
        key = tensor.untyped_storage().data_ptr()
        if key in seen:
            continue
        seen.add(key)
        total += tensor.numel() * tensor.element_size()
    return total


def _latency_ms(model: torch.nn.Module, x: torch.Tensor, runs: int) -> float:
    model.eval()
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(runs):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--max-steps", type=int, default=0, help="0: whole epochs")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    with contextlib.redirect_stdout(io.StringIO()):
        import nni
        from nni.compression.quantization import QATQuantizer
        from nni.compression.utils import TorchEvaluator
    from bench.accuracy import top1 as _top1
    from prunecli import load_model
    from prunecli.data import load_dataset

    bundle = load_dataset("digits", seed=0)
    train_loader, _, test_loader = bundle.loaders(32, 0, 0)
    model = load_model(args.checkpoint).eval()
    x = torch.randn(args.batch, *bundle.input_shape)
    result: dict = {
        "nni": nni.__version__,
        "fp32_bytes": _bytes(model),
        "fp32_top1": _top1(model, test_loader),
    }
    result["fp32_latency_ms"] = _latency_ms(copy.deepcopy(model), x, args.runs)
    steps_per_epoch = len(train_loader) if not args.max_steps else min(args.max_steps, len(train_loader))

    def training_step(batch, net):
        inputs, targets = batch
        return torch.nn.functional.cross_entropy(net(inputs), targets)

    def training_func(net, optimizer, step, lr_schedulers=None, max_steps=None, max_epochs=None):
        net.train()
        for _epoch in range(max_epochs or 1):
            for index, batch in enumerate(train_loader):
                if index >= steps_per_epoch:
                    break
                optimizer.zero_grad()
                step(batch, net).backward()
                optimizer.step()

    optimizer = nni.trace(torch.optim.SGD)(model.parameters(), lr=LR, momentum=0.9)
    evaluator = TorchEvaluator(training_func, optimizer, training_step, dummy_input=x[:1])
    config = [
        {
            "op_types": ["Conv2d", "Linear"],
            "target_names": ["_input_", "weight", "_output_"],
            "quant_dtype": "int8",
            "quant_scheme": "affine",
            "granularity": "default",
        }
    ]
    start = time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        quantizer = QATQuantizer(model, config, evaluator)
        model, _calibration = quantizer.compress(None, args.epochs)
    result["seconds"] = time.process_time() - start
    result["top1"] = _top1(model, test_loader)
    result["bytes"] = _bytes(model)
    result["latency_ms"] = _latency_ms(model, x, args.runs)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
