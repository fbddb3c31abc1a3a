#!/usr/bin/env bash
# Part of docs/BENCHMARKS.md ("One-shot discovery: the evidence"): the re-scored winner of a run (by default
# 'prunevo evolve --preset oneshot') against every classic criterion, every Torch-Pruning importance and
# random, applied as a user would to a network and dataset that no fitness task of the run used: a base net
# trained with 'prunevo train', then 'prunevo compare' with 5 seeds (each its own calibration batch, BatchNorm
# re-estimation and fine-tune), paired verdicts with 95% intervals:
#   - 25% of the MACs, 0.25 epoch of fine-tuning: the one-shot top-1 (before the fine-tune) and the short
#     fine-tune top-1 (after it), from one command;
#   - 50% of the MACs, one-shot.
# Usage: benchmarks/oneshot_evidence.sh RUN_DIR DATA_ROOT OUT_DIR
# Environment: MODEL (resnet56), DATASET (imagefolder:DATA_ROOT/imagenette2), SIZE (32), TRAIN_EPOCHS (8),
#   SEEDS (5).
set -euo pipefail
RUN=${1:?run directory of the evolution}
DATA_ROOT=${2:?data root holding imagenette2/}
OUT=${3:?output directory}
MODEL=${MODEL:-resnet56}
DATASET=${DATASET:-imagefolder:$DATA_ROOT/imagenette2}
COMMON=(--model "$MODEL" --dataset "$DATASET" --data-root "$DATA_ROOT" --image-size "${SIZE:-32}" --device cpu
        --no-progress)
mkdir -p "$OUT"
if [[ ! -f $OUT/base.pt ]]; then
  start=$(date +%s)
  prunevo train "${COMMON[@]}" --epochs "${TRAIN_EPOCHS:-8}" --lr 0.05 --lr-schedule cosine -o "$OUT/base.pt"
  echo "train wall: $(( $(date +%s) - start )) s"
fi
for setting in "0.25 0.25" "0.5 0"; do
  read -r macs epochs <<< "$setting"
  start=$(date +%s)
  prunevo compare "${COMMON[@]}" --checkpoint "$OUT/base.pt" --target-macs "$macs" --epochs "$epochs" \
    --lr 0.01 --lr-schedule clr --no-latency --seeds "${SEEDS:-5}" --formulas "$RUN" baselines \
    -o "$OUT/macs$macs-epochs$epochs"
  echo "compare at $macs MACs, $epochs epochs: $(( $(date +%s) - start )) s"
done
