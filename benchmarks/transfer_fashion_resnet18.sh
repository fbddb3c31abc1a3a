#!/usr/bin/env bash
# The transfer benchmark of docs/BENCHMARKS.md: train a CIFAR-style ResNet-18 on Fashion-MNIST, then compare
# the winner of the first default evolution run with L1, BN, Taylor, Torch-Pruning's group L2 and Taylor, and
# random at 50% MACs, 3 seeds.
# Usage: benchmarks/transfer_fashion_resnet18.sh DATA_ROOT OUT_DIR [TRAIN_EPOCHS] [FINETUNE_EPOCHS]
set -euo pipefail
DATA_ROOT=${1:?data root holding FashionMNIST/raw}
OUT=${2:?output directory}
TRAIN_EPOCHS=${3:-10}
FINETUNE_EPOCHS=${4:-2}
BEST="gamma + mean(abs(Wn))"  # winner of the first 'make run' (kept so that results stay comparable)
mkdir -p "$OUT"
start=$(date +%s)
prunevo train --model resnet18 --dataset fashion-mnist --data-root "$DATA_ROOT" --epochs "$TRAIN_EPOCHS" \
  --lr 0.1 --batch-size 256 --workers 4 --no-progress -o "$OUT/base.pt"
trained=$(date +%s)
echo "train wall: $((trained - start)) s"
prunevo compare --formulas "$BEST" l1 bn taylor tp-l2 tp-taylor random --model resnet18 --dataset fashion-mnist \
  --data-root "$DATA_ROOT" --checkpoint "$OUT/base.pt" --target-macs 0.5 --epochs "$FINETUNE_EPOCHS" \
  --lr 0.01 --lr-schedule clr --batch-size 256 --workers 4 --seeds 3 --latency-batches 1 64 \
  --latency-threads 4 --no-progress -o "$OUT/compare"
echo "compare wall: $(( $(date +%s) - trained )) s"
