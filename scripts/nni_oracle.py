"""Make the NNI oracle masks in tests/data/nni_oracle/ (run with an NNI 3.0 environment).

    /path/to/nni-venv/bin/python scripts/nni_oracle.py

NNI is never a dependency of prunecli: this script is run once by hand and its output committed.
It stores the weights of ``tests.support.nni.OracleNet`` (seed 0) in ``weights.pt``, prunes that
model with NNI's own pruner for every case of ``cases.json`` (a pruner name and a config_list) and
writes, per case and pruned weight, the mask's digest, its zero count and the output channels it
removes to ``masks.json``. tests/test_dialect_nni.py prunes the same weights with the same
config_lists through prunecli and compares.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.nni import CASES, MASKS, WEIGHTS, OracleNet, mask_digest, oracle_model, pruned_rows  # noqa: E402


def main() -> None:
    import nni
    from nni.compression import pruning

    if not WEIGHTS.exists():
        torch.manual_seed(0)
        torch.save(OracleNet().state_dict(), WEIGHTS)
    cases = json.loads(CASES.read_text())
    out: dict[str, object] = {"nni_version": nni.__version__, "torch_version": torch.__version__, "cases": {}}
    for name, case in cases.items():
        model = oracle_model()
        config_list = case["config_list"]
        if case.get("nni_runs_reversed"):
            # NNI 3.0 keeps the FIRST entry naming a module (and logs a warning); the config_list
            # rule documented since NNI 2 (and followed by prunecli) lets the LAST one apply, so the
            # list is given to NNI 3.0 reversed
            config_list = list(reversed(config_list))
        pruner = getattr(pruning, case["pruner"])(model, config_list)
        _, masks = pruner.compress()
        found = {}
        for module, targets in sorted(masks.items()):
            mask = targets.get("weight")
            if mask is None or bool(mask.all()):
                continue
            found[f"{module}.weight"] = {
                "digest": mask_digest(mask),
                "zeros": int((mask == 0).sum()),
                "pruned_rows": pruned_rows(mask),
            }
        out["cases"][name] = found  # type: ignore[index]
        print(name, {k: v["zeros"] for k, v in found.items()})
    MASKS.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
