#!/usr/bin/env bash
# docs/BENCHMARKS.md, "Discovery on the user's network" (issue 27): a search on the network that gets pruned,
# as a user runs it, with the verdict on held-out images that fitness never read.
#   1. base nets, trained with 'prunevo train' and then given to the search as checkpoints:
#      ResNet-20 (CIFAR-style) on Fashion-MNIST at 28 px; torchvision's ResNet-18 (ImageNet stem) on
#      Imagenette at 64 px;
#   2. 'prunevo evolve --model ... --checkpoint ...' at 25% and at 50% of the MACs: one-shot, global allocation
#      (the default), 5 re-scoring seeds; and the same searches under uniform allocation (the criterion alone);
#   3. transfer, as evidence only: each 25% winner applied to the other network with 'prunevo compare', every
#      baseline under uniform and global allocation, 5 seeds.
# Usage: benchmarks/discovery_evidence.sh DATA_ROOT OUT_DIR   (prunevo on the PATH, e.g. PATH=$PWD/.venv/bin:$PATH)
set -euo pipefail
DATA_ROOT=$(cd "${1:?data root holding FashionMNIST/ and imagenette2/}" && pwd)
OUT=${2:?output directory}
mkdir -p "$OUT"
cd "$OUT"
IN="imagefolder:$DATA_ROOT/imagenette2"

timed() {  # NAME COMMAND...: run it, log its output and its wall time to NAME.log
  local name=$1; shift
  local start; start=$(date +%s)
  "$@" > "$name.log" 2>&1
  echo "$name wall $(( $(date +%s) - start )) s" | tee -a "$name.log"
}

[[ -f resnet20_fmnist.pt ]] || timed train-resnet20 prunevo train --model resnet20 --dataset fashion-mnist \
  --data-root "$DATA_ROOT" --epochs 10 --lr 0.05 --lr-schedule cosine --batch-size 128 --device cpu \
  -o resnet20_fmnist.pt --no-progress
[[ -f resnet18_in64.pt ]] || timed train-resnet18 prunevo train --model resnet18 --stem imagenet --dataset "$IN" \
  --image-size 64 --epochs 20 --lr 0.1 --lr-schedule cosine --batch-size 128 --device cpu -o resnet18_in64.pt \
  --no-progress

search() {  # NAME MODEL CHECKPOINT DATASET MACS [options]
  local name=$1 model=$2 checkpoint=$3 dataset=$4 macs=$5; shift 5
  [[ -f runs/$name/rescored.json ]] || timed "$name" prunevo evolve --model "$model" --checkpoint "$checkpoint" \
    --dataset "$dataset" --data-root "$DATA_ROOT" --target-macs "$macs" --rescore-seeds 5 --n-jobs 2 \
    --run-dir "runs/$name" --no-progress "$@"
}
for macs in 0.25 0.5; do
  search "r20-$macs" resnet20 resnet20_fmnist.pt fashion-mnist "$macs"
  search "r18-$macs" resnet18 resnet18_in64.pt "$IN" "$macs"
  search "r20-$macs-uniform" resnet20 resnet20_fmnist.pt fashion-mnist "$macs" --allocation uniform
done

transfer() {  # NAME RUN MODEL CHECKPOINT DATASET
  local name=$1 run=$2 model=$3 checkpoint=$4 dataset=$5
  [[ -f $name/compare.json ]] || timed "$name" prunevo compare --formulas "runs/$run" baselines --model "$model" \
    --checkpoint "$checkpoint" --dataset "$dataset" --data-root "$DATA_ROOT" --target-macs 0.25 --epochs 0 \
    --allocation uniform global --seeds 5 --no-latency --no-progress -o "$name"
}
transfer transfer-r20-winner-on-r18 r20-0.25 resnet18 resnet18_in64.pt "$IN"
transfer transfer-r18-winner-on-r20 r18-0.25 resnet20 resnet20_fmnist.pt fashion-mnist
