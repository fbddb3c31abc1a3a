"""What trying every channel group before scoring costs (``pruning.prunable``), beside the graph it adds to.

For each model, in this process: the dependency graph and groups alone (``groups.find_groups``) and the same
with every group tried (``prunable.prunable_groups``: a pruned copy compared with the masked one, in eval and
training mode, in float64), their wall times and ratio, and the peak RSS after both.  Random weights.

    python benchmarks/group_check_cost.py                         # ResNet-50 at 224 px, ResNet-18 at 224 px
    python benchmarks/group_check_cost.py --models timm:rexnet_100 --size 32
"""
from __future__ import annotations

import argparse
import resource
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "resnet18"])
    parser.add_argument("--size", type=int, default=224, help="image size in pixels")
    args = parser.parse_args()

    from prunevo.pruning.groups import find_groups
    from prunevo.pruning.prunable import prunable_groups
    from prunevo.zoo.models import build_model

    print("| model | px | groups | left whole | find_groups s | prunable_groups s | ratio | peak RSS GB |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        model = build_model(name, 1000, (3, args.size, args.size)).eval()
        x = torch.zeros(1, 3, args.size, args.size)
        start = time.perf_counter()
        groups = find_groups(model, x)
        graph_s = time.perf_counter() - start
        start = time.perf_counter()
        kept, left = prunable_groups(model, x)
        checked_s = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"| {name} | {args.size} | {len(groups)} | {len(left)} | {graph_s:.1f} | {checked_s:.1f} | "
              f"{checked_s / graph_s:.1f} | {peak:.2f} |", flush=True)


if __name__ == "__main__":
    main()
