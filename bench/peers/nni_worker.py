"""Runs inside NNI's own environment: one model, dependency groups + L1NormPruner + ModelSpeedup.

Prints one JSON object on stdout. NNI 3.0's default tracer (``concrete_trace``) is tried first
when ``--probe-default`` is given; its failure is recorded and the ``torch.fx`` graph used instead.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import sys
import time
import warnings

import torch


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("side", type=int)
    parser.add_argument("ratio", type=float)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--probe-default", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    torch.set_num_threads(args.threads)

    from bench.models import build, count_params, example_input

    with contextlib.redirect_stdout(io.StringIO()):
        import nni
        from nni.compression.pruning import L1NormPruner
        from nni.compression.speedup import ModelSpeedup
        from nni.compression.utils import auto_set_denpendency_group_ids
    from prunecli.report.compute import total_macs

    model = build(args.model).eval()
    x = example_input(args.side)
    config = [{"op_types": ["Conv2d"], "sparse_ratio": args.ratio}]
    result: dict = {"nni": nni.__version__}

    def prune(m: torch.nn.Module, use_fx: bool) -> dict:
        start = time.process_time()
        groups = auto_set_denpendency_group_ids(m, copy.deepcopy(config), x)
        p = L1NormPruner(m, groups)
        _, masks = p.compress()
        p.unwrap_model()
        kwargs = {"graph_module": torch.fx.symbolic_trace(m)} if use_fx else {}
        ModelSpeedup(m, x, masks, **kwargs).speedup_model()
        return {"seconds": time.process_time() - start}

    with contextlib.redirect_stdout(io.StringIO()):
        if args.probe_default:
            try:
                prune(copy.deepcopy(model), use_fx=False)
                result["default_tracer"] = "ok"
            except Exception as exc:
                result["default_tracer"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        result.update(prune(model, use_fx=True))
        model.eval()
        with torch.no_grad():
            model(x)
    result["macs"] = total_macs(model, x)
    result["params"] = count_params(model)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
