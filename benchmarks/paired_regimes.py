"""Two 'prunevo compare' runs of one setting side by side, paired by criterion, allocation and seed: the gain of the
second regime over the first (e.g. one-shot + reconstruction over one-shot) with its 95% interval, each regime's
best classic (over all of its own pairs: the two panels may differ; the table holds the pairs both ran), how far apart
the criteria are in each, and the best of the second against the best of the first, paired by seed.

    python benchmarks/paired_regimes.py out/macs0.25-plain/compare.json out/macs0.25-reconstruct/compare.json
"""
from __future__ import annotations

import argparse
import json
import statistics

from prunevo.pruning.criteria import BASELINE_NAMES, RANDOM
from prunevo.verdict import paired_difference


def _runs(path: str) -> tuple[dict, dict[tuple[str, str], dict[int, dict]]]:
    data = json.load(open(path))
    by: dict[tuple[str, str], dict[int, dict]] = {}
    for run in data["runs"]:
        by.setdefault((run["criterion"], run["strategy"]), {})[run["seed"]] = run
    return data, by


def _pp(value: float) -> str:
    return f"{100 * value:+.1f}"


def _with_interval(diff, unit: str = "") -> str:
    """A paired difference in pp (``unit`` after the mean), with its 95% interval when there are seeds enough."""
    return _pp(diff.mean) + unit + (f" [{_pp(diff.low)}, {_pp(diff.high)}]" if diff.low is not None else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", help="compare.json of the first regime")
    parser.add_argument("second", help="compare.json of the second regime")
    args = parser.parse_args()
    (a, first), (b, second) = _runs(args.first), _runs(args.second)
    names = a["config"]["regime"], b["config"]["regime"]
    base = a["base"]["top1"]
    print(f"unpruned top-1 {base:.4f}; {names[1]} against {names[0]}, paired by seed (95% intervals)\n")
    print(f"| criterion | allocation | {names[0]} | {names[1]} | gain (pp) | vs unpruned (pp) | reconstruct s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    both = [k for k in first if k in second]  # the pairs both regimes ran (their panels may differ)
    for key in sorted(both, key=lambda k: (k[1], -statistics.fmean(r["pruned_top1"] for r in second[k].values()))):
        seeds = sorted(set(first[key]) & set(second[key]))
        x = [first[key][s]["pruned_top1"] for s in seeds]
        y = [second[key][s]["pruned_top1"] for s in seeds]
        seconds = statistics.fmean(second[key][s]["wall_s"].get("reconstruct", 0.0) for s in seeds)
        print(f"| {key[0]} | {key[1]} | {statistics.fmean(x):.4f} | {statistics.fmean(y):.4f} | "
              f"{_with_interval(paired_difference(y, x))} | {_pp(statistics.fmean(y) - base)} | {seconds:.1f} |")
    print()
    bests = {}
    for name, runs in zip(names, (first, second)):
        values = {k: statistics.fmean(r["pruned_top1"] for r in by_seed.values()) for k, by_seed in runs.items()}
        classics = {k: v for k, v in values.items() if k[0] in BASELINE_NAMES}
        best = max(classics, key=classics.get)
        worst = min(classics, key=classics.get)
        randoms = [v for k, v in values.items() if k[0] == RANDOM]
        over = "" if len(values) == len(both) else f" (over all {len(values)} of its pairs)"
        print(f"- {name}{over}: best classic {best[0]} ({best[1]}) {classics[best]:.4f}; spread between the "
              f"classics {100 * (classics[best] - classics[worst]):.1f} pp ({worst[0]}, {worst[1]}, lowest); "
              f"random {statistics.fmean(randoms):.4f}")
        bests[name] = runs[best]
    seeds = sorted(set(bests[names[0]]) & set(bests[names[1]]))
    diff = paired_difference([bests[names[1]][s]["pruned_top1"] for s in seeds],
                             [bests[names[0]][s]["pruned_top1"] for s in seeds])
    print(f"- best classic of {names[1]} against best classic of {names[0]}, paired by seed: "
          f"{_with_interval(diff, ' pp')}")


if __name__ == "__main__":
    main()
