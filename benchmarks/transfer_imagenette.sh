#!/usr/bin/env bash
# ImageNet-style transfer benchmark of docs/BENCHMARKS.md: train a torchvision ResNet-18 (ImageNet stem) on
# Imagenette, measure data-loading throughput, then compare the transfer preset's winner with L1, BN, Taylor,
# Torch-Pruning's group L2 and random at 50% MACs, 3 seeds, top-1 on Imagenette's val/ split (never trained on).
#
# Usage: benchmarks/transfer_imagenette.sh IMAGENETTE_DIR OUT_DIR [DEVICE] [TRAIN_EPOCHS] [FINETUNE_EPOCHS]
#   IMAGENETTE_DIR  holds train/ and val/ (e.g. ../shared/data/imagenette2)
#   DEVICE          cuda (224 px, 12 DataLoader workers) or cpu (112 px, 2 workers); default: cuda when present
# Environment overrides: IMAGE_SIZE, WORKERS, SEEDS (3), BATCH (128), LR (0.1), CRITERIA (l1 bn taylor tp-l2).
set -euo pipefail
DATA=${1:?Imagenette folder holding train/ and val/}
OUT=${2:?output directory}
DEVICE=${3:-$(python3 -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}
TRAIN_EPOCHS=${4:-16}
FINETUNE_EPOCHS=${5:-1}
if [[ $DEVICE == cuda* ]]; then SIZE=${IMAGE_SIZE:-224}; WORKERS=${WORKERS:-12}; THREADS=8
else SIZE=${IMAGE_SIZE:-112}; WORKERS=${WORKERS:-2}; THREADS=2; fi
SEEDS=${SEEDS:-3}
BATCH=${BATCH:-128}
LR=${LR:-0.1}
BEST="0.05 + std(Wn)"  # winner of 'prunevo evolve --preset transfer' (docs/BENCHMARKS.md)
read -r -a CRITERIA <<< "${CRITERIA:-l1 bn taylor tp-l2}"
mkdir -p "$OUT"
echo "device $DEVICE, $SIZE px, $WORKERS DataLoader workers, train $TRAIN_EPOCHS epochs, fine-tune $FINETUNE_EPOCHS"

python3 "$(dirname "$0")/loader_throughput.py" "imagefolder:$DATA" --image-size "$SIZE" --batch-size "$BATCH" \
  --workers 0 "$WORKERS" --images 4096

start=$(date +%s)
prunevo train --model resnet18 --dataset "imagefolder:$DATA" --image-size "$SIZE" --device "$DEVICE" \
  --epochs "$TRAIN_EPOCHS" --lr "$LR" --lr-schedule cosine --batch-size "$BATCH" --workers "$WORKERS" \
  --no-progress -o "$OUT/base.pt"
trained=$(date +%s)
echo "train wall: $((trained - start)) s"
prunevo compare --formulas "$BEST" "${CRITERIA[@]}" random --model resnet18 --dataset "imagefolder:$DATA" \
  --image-size "$SIZE" --device "$DEVICE" --checkpoint "$OUT/base.pt" --target-macs 0.5 \
  --epochs "$FINETUNE_EPOCHS" --lr 0.01 --lr-schedule clr --batch-size "$BATCH" --workers "$WORKERS" \
  --seeds "$SEEDS" --latency-batches 1 64 --latency-repeats 3 --latency-threads "$THREADS" --no-progress \
  -o "$OUT/compare"
echo "compare wall: $(( $(date +%s) - trained )) s"
