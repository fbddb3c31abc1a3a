#!/usr/bin/env bash
# The strategies benchmark of docs/BENCHMARKS.md: train ResNet-20 on Fashion-MNIST, then
#  1. prunevo benchmark: criteria x {uniform, global, random-search, layer, iterative} at 50% MACs
#     (plus the unstructured IMP baseline);
#  2. prunevo compare --strategy channel layer: channel pruning matched to layer pruning's measured latency.
# The defaults fit a 2-core CPU in about half an hour (short fine-tuning, one seed); on a GPU raise them.
# Usage: benchmarks/strategies_fashion_resnet20.sh DATA_ROOT OUT_DIR [STEP]
# STEP: all (default), train, benchmark or compare.  Environment: TRAIN_EPOCHS (1), FINETUNE_EPOCHS (0.05),
# SEEDS (1), CANDIDATES (8), THREADS (2), DEVICE (cpu).
set -euo pipefail
DATA_ROOT=${1:?data root holding FashionMNIST/raw}
OUT=${2:?output directory}
STEP=${3:-all}
BEST="gamma + mean(abs(Wn))"  # winner of the first 'make run' (kept so that results stay comparable)
COMMON=(--model resnet20 --dataset fashion-mnist --data-root "$DATA_ROOT" --device "${DEVICE:-cpu}" --no-progress)
PRUNE=(--checkpoint "$OUT/base.pt" --target-macs 0.5 --epochs "${FINETUNE_EPOCHS:-0.05}" --lr 0.05
       --lr-schedule clr --search-candidates "${CANDIDATES:-8}" --search-samples 500 --cycles 3
       --latency-batches 1 64 --latency-threads "${THREADS:-2}" --seeds "${SEEDS:-1}")
mkdir -p "$OUT"
if [[ $STEP == all || $STEP == train ]]; then
  start=$(date +%s)
  prunevo train "${COMMON[@]}" --epochs "${TRAIN_EPOCHS:-1}" --lr 0.1 --lr-schedule cosine -o "$OUT/base.pt"
  echo "train wall: $(( $(date +%s) - start )) s"
fi
if [[ $STEP == all || $STEP == benchmark ]]; then
  start=$(date +%s)
  prunevo benchmark "${COMMON[@]}" "${PRUNE[@]}" --formulas "$BEST" l1 bn taylor tp-l2 tp-taylor random \
    -o "$OUT/benchmark"
  echo "benchmark wall: $(( $(date +%s) - start )) s"
fi
if [[ $STEP == all || $STEP == compare ]]; then
  start=$(date +%s)
  prunevo compare "${COMMON[@]}" "${PRUNE[@]}" --formulas "$BEST" l1 bn taylor tp-l2 tp-taylor --strategy channel layer \
    -o "$OUT/latency"
  echo "compare wall: $(( $(date +%s) - start )) s"
fi
