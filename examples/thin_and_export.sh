#!/usr/bin/env bash
# Thin a pruned checkpoint (zeroed filters still in place) into a compact one, report what that
# saves, and load the compact model as a plain nn.Module.
#
#   bash examples/thin_and_export.sh CHECKPOINT [MODEL]
#
# CHECKPOINT: e.g. a run's checkpoint.pt, or a converted Distiller checkpoint. MODEL: the model
# spec, needed when the model is your own code (file.py:Class) or the checkpoint does not record
# one. The compact checkpoint is written next to CHECKPOINT as NAME.compact.pt (or to $COMPACT).
set -euo pipefail

CHECKPOINT=${1:?usage: thin_and_export.sh CHECKPOINT [MODEL]}
MODEL=${2:-}
COMPACT=${COMPACT:-${CHECKPOINT%.pt}.compact.pt}
model_args=()
if [[ -n "$MODEL" ]]; then model_args=(--model "$MODEL"); fi

# 1. remove every filter and channel that is zero everywhere it is used; the output is checked
#    against the masked model before anything is written
prunecli thin "$CHECKPOINT" "${model_args[@]}" --output "$COMPACT"

# 2. dense architecture against the compact one: parameters, MACs, size, stored accuracy
prunecli report "$COMPACT" "${model_args[@]}" --brief --no-latency

# 3. the compact checkpoint is the exported model: it loads with weights_only=True and rebuilds
#    the thinned architecture, ready for inference or further export (TorchScript, ONNX)
python - "$COMPACT" "$MODEL" <<'PY'
import sys

from prunecli import load_model

path, spec = sys.argv[1], sys.argv[2] or None
model = load_model(path, model=spec)
params = sum(p.numel() for p in model.parameters())
shapes = {name: tuple(p.shape) for name, p in model.named_parameters() if p.dim() > 1}
print(f"loaded {path}: {type(model).__name__}, {params:,} parameters")
for name, shape in shapes.items():
    print(f"  {name}: {shape}")
PY
