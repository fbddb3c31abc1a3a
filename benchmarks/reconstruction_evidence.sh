#!/usr/bin/env bash
# docs/BENCHMARKS.md, "One-shot pruning with reconstruction": one-shot top-1 with and without --reconstruct at 25%
# and 50% of the MACs, SEEDS seeds (each its own calibration batch and BatchNorm re-estimation), every criterion
# of FORMULAS under each allocation of ALLOCATIONS, on a base net trained by 'prunevo train' (or CHECKPOINT).
# Usage: benchmarks/reconstruction_evidence.sh MODEL DATASET DATA_ROOT OUT_DIR
# Environment: SIZE (the dataset's), TRAIN_EPOCHS (4), CHECKPOINT (train one), SEEDS (5), TARGETS ("0.25 0.5"),
#   FORMULAS ("baselines random": every classic, loo and obs included, every Torch-Pruning importance, random),
#   ALLOCATIONS (uniform global), CALIBRATION (256), EXTRA (more compare options).
set -euo pipefail
MODEL=${1:?model}
DATASET=${2:?dataset}
DATA_ROOT=${3:?data root}
OUT=${4:?output directory}
COMMON=(--model "$MODEL" --dataset "$DATASET" --data-root "$DATA_ROOT" --device cpu --no-progress)
[[ -n ${SIZE:-} ]] && COMMON+=(--image-size "$SIZE")
mkdir -p "$OUT"
BASE=${CHECKPOINT:-$OUT/base.pt}
if [[ ! -f $BASE ]]; then
  start=$(date +%s)
  prunevo train "${COMMON[@]}" --epochs "${TRAIN_EPOCHS:-4}" --lr 0.1 --lr-schedule cosine -o "$BASE"
  echo "train wall: $(( $(date +%s) - start )) s"
fi
read -r -a formulas <<< "${FORMULAS:-baselines random}"
read -r -a allocations <<< "${ALLOCATIONS:-uniform global}"
read -r -a extra <<< "${EXTRA:-}"
for macs in ${TARGETS:-0.25 0.5}; do
  for mode in plain reconstruct; do
    flag=(); [[ $mode == reconstruct ]] && flag=(--reconstruct)
    start=$(date +%s)
    prunevo compare "${COMMON[@]}" --checkpoint "$BASE" --target-macs "$macs" --epochs 0 --no-latency \
      --calibration-samples "${CALIBRATION:-256}" --allocation "${allocations[@]}" --seeds "${SEEDS:-5}" \
      --formulas "${formulas[@]}" "${flag[@]}" "${extra[@]}" -o "$OUT/macs$macs-$mode"
    echo "compare at $macs MACs, $mode: $(( $(date +%s) - start )) s"
  done
done
