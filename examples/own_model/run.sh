#!/usr/bin/env bash
# Prune a model of your own from the command line: check the schedule against the model, train,
# prune, thin and fine-tune it, then report dense against compressed.
#
#   bash examples/own_model/run.sh                  # about 10 s of CPU time
#   OUT=runs/mine bash examples/own_model/run.sh --quiet
#
# Extra arguments go to `prunecli run`; OUT names the run directory (it must be new or empty).
set -euo pipefail
cd "$(dirname "$0")/../.."

MODEL=examples/own_model/net.py:Net
SCHEDULE=examples/own_model/schedule.yaml
OUT=${OUT:-runs/own_model-$(date -u +%Y%m%d-%H%M%S)}

# the data set (digits) comes from the schedule's FilterRemover, as for `prunecli run`
prunecli validate "$SCHEDULE" --model "$MODEL"
prunecli run "$SCHEDULE" --model "$MODEL" --epochs 14 --batch-size 32 --lr 0.05 --out-dir "$OUT" "$@"
# a model defined by your own code is only ever built when you name it
prunecli report "$OUT" --model "$MODEL" --brief --no-latency
