"""Searching on ImageNet-size networks: what one one-shot fitness evaluation costs, and which cheaper proxy of
the same network ranks pruning criteria as the full-size evaluation does.

For a checkpoint (a network trained by ``prunevo train``), the *full-size* task prunes it one-shot to
``--macs`` of its MACs (uniform allocation: the panel compares criteria, not widths), re-estimates BatchNorm
on 2 batches of 256 training images and scores every criterion of the panel (every classic criterion, every
Torch-Pruning importance, random) on the whole fitness split at the checkpoint's image size.  Each proxy
changes one thing (fewer validation images, a smaller input, fewer classes) and scores the same panel.  For
every proxy it prints Spearman's rho of its ranking against the full-size ranking, with a 95% percentile
bootstrap interval (the panel resampled in pairs, as ``benchmarks/fidelity.py``), the seconds of one
evaluation, and rho per CPU-second; then the wall-clock time a whole search would take with each.

Timing: the panel's selections are measured by two local workers (``--n-jobs``), each on one thread, so one
evaluation costs about ``n_jobs x wall / evaluations`` CPU-seconds; calibration statistics (computed once per
task and shared by every formula of a search) are timed apart.  One evaluation on both cores is also timed
alone (``one eval on 2 threads``).  Results are saved to ``-o`` after every task; a rerun reuses them.
``--cost-only`` times the evaluations of a network without a trained checkpoint (any weights: the cost does
not depend on them), without the panel and rho.

    .venv/bin/python benchmarks/large_inputs.py --model resnet50 --checkpoint r50.pt \
        --data-root ../shared/data -o large_inputs_resnet50.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.stats import bootstrap, pearsonr, rankdata, spearmanr

from prunevo.fitness.evaluator import Evaluator
from prunevo.fitness.execution import Execution
from prunevo.fitness.task_spec import parse_task
from prunevo.fitness.tasks import prepare_task
from prunevo.pruning.criteria import BASELINE_NAMES, RandomCriterion, as_criterion

ONE_SHOT = "epochs=0,recal=2,allocation=uniform"
PROXIES = {  # name -> task options added to the full-size task
    "full size": "",
    "1,000 validation images": "val=1000",
    "500 validation images": "val=500",
    "250 validation images": "val=250",
    "160 px": "size=160",
    "112 px": "size=112",
    "5 of 10 classes": "classes=5",
    "112 px, 500 images": "size=112,val=500",
}
RANDOM_DRAWS = 3  # random is scored as this many draws, each a panel member
COST_FORMULA = "abs(mean(F * G))"  # --cost-only: Taylor, whose statistics need the backward pass too


def panel() -> list:
    """Every named baseline, then ``RANDOM_DRAWS`` draws of random."""
    return [as_criterion(n) for n in BASELINE_NAMES] + [RandomCriterion(s) for s in range(RANDOM_DRAWS)]


def measure(spec: str, data_root: str, n_jobs: int, cost_only: bool = False) -> dict:
    """Relative accuracy per panel member (None where n/a or invalid), calibration seconds, and the seconds of
    the measurements.  ``cost_only`` (for a network without a trained checkpoint): the panel is Taylor
    (``COST_FORMULA``: its statistics take the forward and backward calibration pass, the dearest) and
    ``RANDOM_DRAWS`` draws of random; a selection costs the same whatever chose it."""
    prepared = prepare_task(parse_task(spec), data_root)
    criteria = ([as_criterion(COST_FORMULA)] + [RandomCriterion(s) for s in range(RANDOM_DRAWS)] if cost_only
                else panel())
    evaluator = Evaluator([prepared], execution=Execution(n_jobs=n_jobs), threads_per_job=1)
    start = time.perf_counter()
    plans = [evaluator.mask_plan(c) for c in criteria]  # calibration statistics and scores, in this process
    scoring = time.perf_counter() - start
    start = time.perf_counter()
    results = evaluator.evaluate(criteria, full=True)
    wall = time.perf_counter() - start
    evaluator.close()
    single = Evaluator([prepared], threads_per_job=2)  # one evaluation alone on both cores
    start = time.perf_counter()
    single.evaluate([RandomCriterion(99)], full=True)
    alone = time.perf_counter() - start
    measured = len({p.selection for p in plans if p.selection is not None})
    return {"spec": spec, "relative": [r.applicable_fitness if r.valid else None for r in results],
            "base": prepared.base_val_accuracy, "images": len(prepared.data.val), "size": prepared.data.input_shape[1],
            "scoring_s": scoring, "measure_wall_s": wall, "evaluations": measured,
            "cpu_s_per_eval": n_jobs * wall / max(1, measured), "one_eval_2_threads_s": alone}


def spearman(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return pearsonr(rankdata(a, axis=axis), rankdata(b, axis=axis), axis=axis).statistic


def rho_interval(x: list, y: list) -> tuple[float, float, float, int]:
    """Spearman's rho over the members both rank, with a 95% percentile bootstrap interval (seeded)."""
    pairs = np.array([(a, b) for a, b in zip(x, y) if a is not None and b is not None])
    rho = float(spearmanr(pairs[:, 0], pairs[:, 1]).statistic)
    res = bootstrap((pairs[:, 0], pairs[:, 1]), spearman, paired=True, vectorized=True, n_resamples=2000,
                    method="percentile", random_state=0)
    return rho, float(res.confidence_interval.low), float(res.confidence_interval.high), len(pairs)


# evaluations a default search runs (population 48, 10 generations, baselines under uniform and global, 3
# re-scoring seeds): new selections and cache hits as measured on the ResNet-20 search (docs/BENCHMARKS.md)
SEARCH_NEW_SELECTIONS = 330
SEARCH_BASELINES = 2 * (len(BASELINE_NAMES) + 3)
SEARCH_RESCORE = 3 * (10 + 2 * (len(BASELINE_NAMES) + 1) + 1)


def report(saved: dict) -> None:
    tasks = saved["tasks"]
    full = tasks.get("full size")
    if full is None:
        print("full size: not measured")
        return
    if saved.get("cost_only"):
        print(f"\n{saved['model']}, cost only (untrained weights: no ranking, no rho)")
        print(f"{'proxy':<26} {'images':>6} {'px':>4} {'CPU-s/eval':>10} {'one eval, 2 threads, s':>22} "
              f"{'calibration s':>13}")
        for name, t in tasks.items():
            print(f"{name:<26} {t['images']:>6} {t['size']:>4} {t['cpu_s_per_eval']:>10.1f} "
                  f"{t['one_eval_2_threads_s']:>22.1f} {t['scoring_s']:>13.1f}")
        return
    print(f"\n{saved['model']} at {full['size']} px, {saved['macs']:.0%} of the MACs, one-shot: base top-1 "
          f"{full['base']:.4f} on {full['images']} fitness images; one evaluation on 2 threads "
          f"{full['one_eval_2_threads_s']:.1f} s, {full['cpu_s_per_eval']:.1f} CPU-s; calibration statistics of the "
          f"panel {full['scoring_s']:.0f} s")
    print(f"{'proxy':<26} {'images':>6} {'px':>4} {'rho vs full size':>24} {'CPU-s/eval':>10} {'rho/CPU-s':>9} "
          f"{'search, h':>9}")
    for name, t in tasks.items():
        rho, low, high, n = rho_interval(t["relative"], full["relative"])
        search = (t["scoring_s"] + (SEARCH_NEW_SELECTIONS + SEARCH_BASELINES) * t["cpu_s_per_eval"] / 2
                  + full["scoring_s"] + SEARCH_RESCORE * full["cpu_s_per_eval"] / 2) / 3600
        print(f"{name:<26} {t['images']:>6} {t['size']:>4} {rho:+.2f} [{low:+.2f}, {high:+.2f}] (n={n:>2}) "
              f"{t['cpu_s_per_eval']:>10.1f} {rho / t['cpu_s_per_eval']:>9.3f} {search:>9.2f}")
    print("search, h: a default search (population 48, 10 generations, baselines under two allocations) with the "
          "proxy as fitness, re-scored on 3 seeds at full size, on 2 cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the checkpoint's model (resnet18, resnet50...)")
    parser.add_argument("--checkpoint", required=True, help="a checkpoint from 'prunevo train' on Imagenette")
    parser.add_argument("--data-root", required=True, help="folder holding imagenette2/")
    parser.add_argument("--dataset", default="imagefolder:{root}/imagenette2",
                        help="the checkpoint's dataset ({root}: --data-root; default: Imagenette)")
    parser.add_argument("--macs", type=float, default=0.5, help="share of the MACs kept (default: 0.5)")
    parser.add_argument("--n-jobs", type=int, default=2, help="local workers measuring the panel (default: 2)")
    parser.add_argument("--only", nargs="+", choices=list(PROXIES), help="measure only these proxies")
    parser.add_argument("--cost-only", action="store_true",
                        help="time the evaluations only (random selections; any weights, e.g. an untrained state "
                             "dict), without the panel and rho")
    parser.add_argument("-o", "--output", default="large_inputs.json")
    args = parser.parse_args()
    out_path = Path(args.output)
    saved = json.loads(out_path.read_text()) if out_path.exists() else {}
    setting = {"model": args.model, "checkpoint": str(Path(args.checkpoint).resolve()), "macs": args.macs,
               "dataset": args.dataset, "cost_only": args.cost_only}
    if {k: saved.get(k) for k in setting} != setting:
        saved = {**setting, "tasks": {}}
    dataset = args.dataset.format(root=Path(args.data_root).resolve())
    base = f"{args.model}@{dataset}:checkpoint={setting['checkpoint']},macs={args.macs},{ONE_SHOT}"
    for name, options in PROXIES.items():
        if name in saved["tasks"] or (args.only and name not in args.only):
            continue
        spec = base + (f",{options}" if options else "")
        saved["tasks"][name] = measure(spec, args.data_root, args.n_jobs, args.cost_only)
        out_path.write_text(json.dumps(saved, indent=1))
        t = saved["tasks"][name]
        print(f"measured {name}: {t['evaluations']} evaluations, {t['cpu_s_per_eval']:.1f} CPU-s each, calibration "
              f"{t['scoring_s']:.0f} s", flush=True)
    report(saved)


if __name__ == "__main__":
    main()
