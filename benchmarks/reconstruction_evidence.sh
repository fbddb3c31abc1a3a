#!/usr/bin/env bash
# docs/BENCHMARKS.md, "One-shot pruning with reconstruction": one-shot top-1 with and without --reconstruct at 25%
# and 50% of the MACs, SEEDS seeds (each its own calibration batch and BatchNorm re-estimation), every criterion
# of FORMULAS under each allocation of ALLOCATIONS, on a base net trained by 'prunevo train' (or CHECKPOINT).
# Usage: benchmarks/reconstruction_evidence.sh MODEL DATASET DATA_ROOT OUT_DIR
# Environment: SIZE (the dataset's), TRAIN_EPOCHS (4), CHECKPOINT (train one), SEEDS (5), TARGETS ("0.25 0.5"),
#   FORMULAS ("baselines random": every classic, loo and obs included, every Torch-Pruning importance, random),
#   ALLOCATIONS (uniform global), CALIBRATION (256), MODES ("plain reconstruct"), EXTRA (more compare options),
#   DEVICE (cpu), WORKERS (DataLoader workers, 0), TRAIN_WORKERS (WORKERS), BATCH (training batch, 128),
#   PARALLEL (1: every target and mode its own process at once, each logging to OUT_DIR/macsM-MODE.log: for a GPU
#   machine with many cores).
set -euo pipefail
MODEL=${1:?model}
DATASET=${2:?dataset}
DATA_ROOT=${3:?data root}
OUT=${4:?output directory}
COMMON=(--model "$MODEL" --dataset "$DATASET" --data-root "$DATA_ROOT" --device "${DEVICE:-cpu}" --no-progress
        --workers "${WORKERS:-0}")
[[ -n ${SIZE:-} ]] && COMMON+=(--image-size "$SIZE")
mkdir -p "$OUT"
BASE=${CHECKPOINT:-$OUT/base.pt}
if [[ ! -f $BASE ]]; then
  start=$(date +%s)
  prunevo train "${COMMON[@]}" --epochs "${TRAIN_EPOCHS:-4}" --lr 0.1 --lr-schedule cosine \
    --batch-size "${BATCH:-128}" --workers "${TRAIN_WORKERS:-${WORKERS:-0}}" -o "$BASE"
  echo "train wall: $(( $(date +%s) - start )) s"
fi
read -r -a formulas <<< "${FORMULAS:-baselines random}"
read -r -a allocations <<< "${ALLOCATIONS:-uniform global}"
read -r -a extra <<< "${EXTRA:-}"
one() {  # one compare: target $1, mode $2
  local flag=() start
  [[ $2 == reconstruct ]] && flag=(--reconstruct)
  start=$(date +%s)
  prunevo compare "${COMMON[@]}" --checkpoint "$BASE" --target-macs "$1" --epochs 0 --no-latency \
    --calibration-samples "${CALIBRATION:-256}" --allocation "${allocations[@]}" --seeds "${SEEDS:-5}" \
    --formulas "${formulas[@]}" "${flag[@]}" "${extra[@]}" -o "$OUT/macs$1-$2"
  echo "compare at $1 MACs, $2: $(( $(date +%s) - start )) s"
}
pids=()
for macs in ${TARGETS:-0.25 0.5}; do
  for mode in ${MODES:-plain reconstruct}; do
    if [[ ${PARALLEL:-0} == 1 ]]; then
      one "$macs" "$mode" > "$OUT/macs$macs-$mode.log" 2>&1 &
      pids+=($!)
    else
      one "$macs" "$mode"
    fi
  done
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
[[ $status == 0 ]] || { echo "a compare failed: see $OUT/*.log" >&2; exit 1; }
