#!/usr/bin/env bash
# Thin a pruned checkpoint (zeroed filters still in place) into a compact one, report what that
# saves, export it (ONNX by default) and load the compact model as a plain nn.Module.
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

# 3. export the compact model for deployment: the file is loaded back by its runtime and its outputs
#    compared with PyTorch's before it is kept (FORMAT: onnx, the default, needs the export extra;
#    torchscript and exported-program need nothing more)
prunecli export "$COMPACT" "${model_args[@]}" --format "${FORMAT:-onnx}"

# 4. in Python the compact checkpoint rebuilds the thinned nn.Module (it loads with weights_only=True)
python - "$COMPACT" "$MODEL" <<'PY'
import sys

from prunecli import load_model

path, spec = sys.argv[1], sys.argv[2] or None
model = load_model(path, model=spec)
params = sum(p.numel() for p in model.parameters())
print(f"loaded {path}: {type(model).__name__}, {params:,} parameters")
for name, p in model.named_parameters():
    if p.dim() > 1:
        print(f"  {name}: {tuple(p.shape)}")
PY
