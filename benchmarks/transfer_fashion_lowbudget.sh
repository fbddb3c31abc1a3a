#!/usr/bin/env bash
# Companion of transfer_fashion_resnet18.sh: the same comparison with a fine-tune budget too small to
# hide the choice of channels (0.2 epochs), reusing its base checkpoint.
# Usage: benchmarks/transfer_fashion_lowbudget.sh DATA_ROOT BASE_CHECKPOINT OUT_DIR
set -euo pipefail
DATA_ROOT=${1:?data root holding FashionMNIST/raw}
BASE=${2:?checkpoint from prunevo train}
OUT=${3:?output directory}
prunevo compare --formulas "gamma + mean(abs(Wn))" l1 bn taylor tp-l2 tp-taylor random --model resnet18 --dataset fashion-mnist \
  --data-root "$DATA_ROOT" --checkpoint "$BASE" --target-macs 0.5 --epochs 0.2 --lr 0.01 --lr-schedule clr \
  --batch-size 256 --workers 4 --seeds 3 --no-latency --no-progress -o "$OUT"
