#!/usr/bin/env bash
# Part of docs/BENCHMARKS.md ("A preset that yields a transferable formula"): the re-scored winner of
# 'prunevo evolve --preset transfer' against every classic criterion, Torch-Pruning's importances and random,
# on a model/dataset pair that is not among the preset's fitness tasks: ResNet-20 on Fashion-MNIST, 50% MACs,
# uniform allocation, 3 seeds.
# Usage: benchmarks/preset_winner_fashion_resnet20.sh DATA_ROOT OUT_DIR "FORMULA"
# Environment: TRAIN_EPOCHS (1), FINETUNE_EPOCHS (0.1), SEEDS (3).
set -euo pipefail
DATA_ROOT=${1:?data root holding FashionMNIST/raw}
OUT=${2:?output directory}
FORMULA=${3:?the winner formula, e.g. from 'prunevo export RUN --format text'}
COMMON=(--model resnet20 --dataset fashion-mnist --data-root "$DATA_ROOT" --device cpu --no-progress)
mkdir -p "$OUT"
if [[ ! -f $OUT/base.pt ]]; then
  prunevo train "${COMMON[@]}" --epochs "${TRAIN_EPOCHS:-1}" --lr 0.1 --lr-schedule cosine -o "$OUT/base.pt"
fi
start=$(date +%s)
prunevo compare "${COMMON[@]}" --checkpoint "$OUT/base.pt" --target-macs 0.5 --epochs "${FINETUNE_EPOCHS:-0.1}" \
  --lr 0.05 --lr-schedule clr --no-latency --seeds "${SEEDS:-3}" \
  --formulas "$FORMULA" l1 l2 bn taylor apoz activation snr fpgm tp-l1 tp-l2 tp-bn tp-taylor tp-hessian tp-lamp \
  tp-fpgm random -o "$OUT/compare"
echo "compare wall: $(( $(date +%s) - start )) s"
