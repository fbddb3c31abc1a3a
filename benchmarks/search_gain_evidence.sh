#!/usr/bin/env bash
# docs/BENCHMARKS.md, "Does the search beat its seeds?" (issue 28): the evolution gain (the winner minus the
# best seed, both chosen on validation, paired on held-out images over 5 re-scoring seeds) and the winner's
# curse, with each part of the search switched off in turn.
#   ResNet-20 (CIFAR-style) on Fashion-MNIST and ResNet-18 (ImageNet stem) on Imagenette at 64 px, as user
#   checkpoints ('prunevo train', benchmarks/discovery_evidence.sh makes them), pruned one-shot to 25% of the
#   MACs with global allocation: 'prunevo evolve --model ... --checkpoint ...' with its defaults (population 48,
#   11 generations, racing 8 leaders x 3 draws with risk 1, node mutation 0.5).
# Usage: benchmarks/search_gain_evidence.sh DATA_ROOT CHECKPOINT_DIR OUT_DIR
#   (prunevo on the PATH, e.g. PATH=$PWD/.venv/bin:$PATH; CHECKPOINT_DIR holds resnet20_fmnist.pt and
#   resnet18_in64.pt)
set -euo pipefail
DATA_ROOT=$(cd "${1:?data root holding FashionMNIST/ and imagenette2/}" && pwd)
CK=$(cd "${2:?directory of resnet20_fmnist.pt and resnet18_in64.pt}" && pwd)
OUT=${3:?output directory}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
cd "$OUT"

timed() {  # NAME COMMAND...: run it, log its output and its wall time to NAME.log
  local name=$1; shift
  local start; start=$(date +%s)
  "$@" > "$name.log" 2>&1
  echo "$name wall $(( $(date +%s) - start )) s" | tee -a "$name.log"
}

search() {  # NAME MODEL CHECKPOINT DATASET [options]
  local name=$1 model=$2 checkpoint=$3 dataset=$4; shift 4
  [[ -f runs/$name/rescored.json ]] || timed "$name" prunevo evolve --model "$model" --checkpoint "$checkpoint" \
    --dataset "$dataset" --data-root "$DATA_ROOT" --target-macs 0.25 --rescore-seeds 5 --n-jobs 2 \
    --run-dir "runs/$name" --no-progress "$@"
}
R20=(resnet20 "$CK/resnet20_fmnist.pt" fashion-mnist)
search r20-25 "${R20[@]}"                                   # everything on
search r20-25-mean "${R20[@]}" --race-risk 0                # racing selects on the mean of the draws
search r20-25-norace "${R20[@]}" --race 0                   # no racing
search r20-25-nonode "${R20[@]}" --node-mutation 0          # subtree mutation only
search r20-25-off "${R20[@]}" --race 0 --node-mutation 0    # the search before issue 28
search r18-25 resnet18 "$CK/resnet18_in64.pt" "imagefolder:$DATA_ROOT/imagenette2"

python "$HERE/search_gain.py" runs/r20-25 runs/r20-25-mean runs/r20-25-norace runs/r20-25-nonode runs/r20-25-off \
  runs/r18-25 --rung runs/r20-25 | tee search_gain.txt
