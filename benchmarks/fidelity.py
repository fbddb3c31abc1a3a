"""Fitness fidelity: how well each proxy fitness ranks pruning criteria the way a longer, held-out run does.

A fixed panel of criteria (the classic ones, two Torch-Pruning importances, and seeded samples of the
grammar with distinct selections) is scored by every proxy setting and by a *reference*: top-1 on the
held-out (test) split after pruning to 50% of the MACs and a longer fine-tune, mean of 3 seeds, on
model/dataset pairs that no proxy uses.  For each proxy it prints Spearman's rho against the reference
(with a 95% bootstrap interval over the panel), the CPU-seconds per criterion evaluation, and rho per
CPU-second.  Every evaluator runs on one thread, so CPU-seconds compare across settings.

Ladder proxies (``LADDERS``) climb the fidelity ladder as evolution does: the whole panel at rung 0, the
best share at the next rung.  For each rung they print rho of that rung's values over the candidates it
measured, how many of the reference's top 10 reached the rung (recall), and panel evaluations per
CPU-second up to that rung; the last line ranks the panel by (highest rung reached, value there), which is
the order evolution selects on.

    .venv/bin/python benchmarks/fidelity.py --data-root ../shared/data -o fidelity.json
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from prunevo.evolve.individuals import build_pset, gen_half_and_half, to_node
from prunevo.fitness.evaluator import Evaluator
from prunevo.fitness.ladder import Ladder
from prunevo.fitness.rescore import holdout_tasks
from prunevo.fitness.task_spec import parse_task
from prunevo.fitness.tasks import prepare_task
from prunevo.primitives import Formula
from prunevo.primitives.classic import CLASSIC_TEXT
from prunevo.pruning.criteria import as_criterion

IMAGENETTE = "imagefolder:{root}/imagenette2"
REFERENCE = ["resnet20@fashion-mnist:macs=0.5,epochs=1,train=4000,seeds=3",
             "resnet20@" + IMAGENETTE + ":size=32,macs=0.5,epochs=1,train=4000,seeds=3"]
PROXIES = {
    "default (digits, val 360)": ["digits-vgg", "digits-resnet"],
    "digits, BN recalibration only": ["small-vgg@digits:epochs=0", "small-resnet@digits:epochs=0"],
    "digits, BN recalibration only (batched evaluator)": ["small-vgg@digits:epochs=0", "small-resnet@digits:epochs=0"],
    "digits, BN recalibration only, 2 batches": ["small-vgg@digits:epochs=0,recal=2",
                                                 "small-resnet@digits:epochs=0,recal=2"],
    "digits, BN recalibration only, 1 batch": ["small-vgg@digits:epochs=0,recal=1",
                                               "small-resnet@digits:epochs=0,recal=1"],
    "digits, 3 fine-tune seeds": ["small-vgg@digits:seeds=3", "small-resnet@digits:seeds=3"],
    "digits, global allocation": ["small-vgg@digits:allocation=global", "small-resnet@digits:allocation=global"],
    "mnist, val 2000": ["lenet5@mnist:val=2000", "small-resnet@mnist:val=2000"],
    "mnist, val 2000, 50% MACs": ["lenet5@mnist:val=2000,macs=0.5", "small-resnet@mnist:val=2000,macs=0.5"],
    "mnist, val 2000, BN recalibration only": ["lenet5@mnist:val=2000,epochs=0", "small-resnet@mnist:val=2000,epochs=0"],
    "seed paper: lenet5@mnist + small-vgg@imagenette": ["lenet5@mnist:val=2000", "small-vgg@" + IMAGENETTE + ":size=32"],
    "4 tasks co-evolved": ["digits-vgg", "digits-resnet", "lenet5@mnist:val=2000", "small-resnet@mnist:val=2000"],
    "new default candidate: digits + mnist, 50% MACs, val 2000": [
        "small-vgg@digits:macs=0.5", "small-resnet@mnist:val=2000,macs=0.5,train=2000"],
}

MNIST = ["lenet5@mnist:val=2000", "small-resnet@mnist:val=2000"]
LADDERS = {
    "mnist, val 2000, ladder 0.25": (MNIST, Ladder((0.25,), subset=500)),
    "mnist, val 2000, ladder 0.5,0.5": (MNIST, Ladder((0.5, 0.5), subset=500)),
    "mnist, val 2000, ladder 0.125": (MNIST, Ladder((0.125,), subset=500)),
    "digits, ladder 0.25": (["digits-vgg", "digits-resnet"], Ladder((0.25,))),
    "digits, 3 fine-tune seeds, ladder 0.25": (["small-vgg@digits:seeds=3", "small-resnet@digits:seeds=3"],
                                                Ladder((0.25,))),
    "digits, 3 fine-tune seeds, ladder 0.5": (["small-vgg@digits:seeds=3", "small-resnet@digits:seeds=3"],
                                               Ladder((0.5,))),
    "digits, ladder 0.25, rung-0 recal 1 batch": (["digits-vgg", "digits-resnet"], Ladder((0.25,), recal_batches=1)),
    "digits, ladder 0.25, rung-0 recal 2 batches": (["digits-vgg", "digits-resnet"], Ladder((0.25,), recal_batches=2)),
    "digits, ladder 0.125, rung-0 recal 2 batches": (["digits-vgg", "digits-resnet"], Ladder((0.125,), recal_batches=2)),
    "digits, 3 seeds, ladder 0.25, rung-0 recal 1": (["small-vgg@digits:seeds=3", "small-resnet@digits:seeds=3"],
                                                     Ladder((0.25,), recal_batches=1)),
    "mnist, val 2000, ladder 0.25, rung-0 recal 1": (MNIST, Ladder((0.25,), subset=500, recal_batches=1)),
}


def panel(samples: int, seed: int, probe: Evaluator) -> list:
    """Classic criteria, tp-l2 and tp-taylor, then grammar samples that rank every probe task and select
    channels no earlier panel member selects."""
    criteria = [as_criterion(n) for n in (*CLASSIC_TEXT, "tp-l2", "tp-taylor")]
    seen = {probe.mask_plan(c).selection for c in criteria}
    pset = build_pset()
    random.seed(seed)
    while len(criteria) < len(CLASSIC_TEXT) + 2 + samples:
        candidate = as_criterion(Formula(to_node(gen_half_and_half(pset, 1, 4))))
        plan = probe.mask_plan(candidate)
        if plan.selection is not None and not plan.not_applicable and plan.selection not in seen:
            seen.add(plan.selection)
            criteria.append(candidate)
    return criteria


def fitness_of(specs: list[str], criteria: list, data_root: str, holdout: bool = False) -> tuple[list, float, int]:
    """(applicable fitness per criterion or None, CPU-seconds of the evaluation, fine-tunes run)."""
    prepared = [prepare_task(parse_task(s.format(root=data_root)), data_root) for s in specs]
    if holdout:
        prepared = holdout_tasks(prepared, prepared[0].task.seeds)
    evaluator = Evaluator(prepared, n_jobs=1, threads_per_job=1)
    start = time.process_time()
    results = evaluator.evaluate(criteria)
    cpu = time.process_time() - start
    values = [r.applicable_fitness if (r.reason is None and not r.not_applicable) else None for r in results]
    return values, cpu, evaluator.stats.jobs


def ladder_of(specs: list[str], ladder: Ladder, criteria: list, data_root: str) -> dict:
    """Per rung: every criterion's value there (None when it did not reach it) and the CPU-seconds spent
    up to and including that rung."""
    prepared = [prepare_task(parse_task(s.format(root=data_root)), data_root) for s in specs]
    evaluator = Evaluator(prepared, n_jobs=1, threads_per_job=1, ladder=ladder)
    start = time.process_time()
    plans = [evaluator.mask_plan(c) for c in criteria]
    cohort = [p for p in plans if p.reason is None and not p.not_applicable]
    rungs, cpu = [], []
    for rung in range(ladder.rungs):
        evaluator._measure(cohort, rung)
        cpu.append(time.process_time() - start)
        values = {p.selection: evaluator._result(p, rung).fitness for p in cohort}
        rungs.append([values.get(p.selection) for p in plans])
        if rung < ladder.rungs - 1:
            ranked = sorted(range(len(cohort)), key=lambda i: -values[cohort[i].selection])
            cohort = [cohort[i] for i in sorted(ranked[:ladder.promoted(rung, len(cohort))])]
    return {"specs": specs, "keep": list(ladder.keep), "subset": ladder.subset, "recal_batches": ladder.recal_batches,
            "rungs": rungs, "cpu_s": cpu}


def report_ladder(name: str, result: dict, combined: list, top10: set[int], n: int) -> None:
    final = [None] * n
    for rung, values in enumerate(result["rungs"]):
        reached = [i for i, v in enumerate(values) if v is not None]
        for i in reached:
            final[i] = rung + values[i]  # (highest rung reached, value there) as one sortable number
        rho = rho_with_interval(values, combined)[0] if len(reached) > 3 else float("nan")
        recall = len(top10 & set(reached))
        print(f"{name:<40} rung {rung}: {len(reached):>2} measured, rho {rho:+.3f}, reference top-10 kept "
              f"{recall}/10, {n / result['cpu_s'][rung]:.2f} evals/CPU-s", flush=True)
    rho, low, high, _ = rho_with_interval(final, combined)
    per_eval = result["cpu_s"][-1] / n
    print(f"{name:<40} ladder order: rho {rho:+.3f} [{low:+.3f}, {high:+.3f}]; {per_eval:6.2f} CPU-s/eval; "
          f"rho per CPU-s {rho / per_eval:+.3f}", flush=True)


def rho_with_interval(x: list, y: list, rounds: int = 2000, seed: int = 0) -> tuple[float, float, float, int]:
    pairs = np.array([(a, b) for a, b in zip(x, y) if a is not None and b is not None])
    rho = spearmanr(pairs[:, 0], pairs[:, 1]).statistic
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(rounds):
        sample = pairs[rng.integers(0, len(pairs), len(pairs))]
        if len(set(sample[:, 0])) > 1 and len(set(sample[:, 1])) > 1:
            boot.append(spearmanr(sample[:, 0], sample[:, 1]).statistic)
    low, high = np.percentile(boot, [2.5, 97.5])
    return float(rho), float(low), float(high), len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="folder with MNIST/, FashionMNIST/ and imagenette2/")
    parser.add_argument("--samples", type=int, default=20, help="grammar samples in the panel (default: 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--proxies", nargs="+", help="proxy names to run (default: all)")
    parser.add_argument("-o", "--output", default="fidelity.json")
    args = parser.parse_args()
    out_path = Path(args.output)
    saved = json.loads(out_path.read_text()) if out_path.exists() else {}

    probe = Evaluator([prepare_task(parse_task(s)) for s in PROXIES["default (digits, val 360)"]])
    criteria = panel(args.samples, args.seed, probe)
    names = [c.name for c in criteria]
    print(f"panel: {len(criteria)} criteria ({', '.join(names[:10])}, ...)", flush=True)

    if saved.get("panel") == names and "reference" in saved:
        reference = saved["reference"]
    else:
        reference = {}
        for spec in REFERENCE:
            values, cpu, jobs = fitness_of([spec], criteria, args.data_root, holdout=True)
            reference[spec] = {"fitness": values, "cpu_s": cpu, "jobs": jobs}
            print(f"reference {spec}: {jobs} fine-tunes, {cpu:.0f} CPU-s", flush=True)
        saved = {"panel": names, "reference": reference, "proxies": {}}
        out_path.write_text(json.dumps(saved, indent=1))
    per_task = [reference[s]["fitness"] for s in REFERENCE]
    combined = [None if any(v[i] is None for v in per_task) else math.exp(sum(math.log(v[i]) for v in per_task) / 2)
                for i in range(len(names))]

    for name, specs in PROXIES.items():
        if args.proxies and name not in args.proxies:
            continue
        if name not in saved["proxies"]:
            values, cpu, jobs = fitness_of(specs, criteria, args.data_root)
            saved["proxies"][name] = {"specs": specs, "fitness": values, "cpu_s": cpu, "jobs": jobs}
            out_path.write_text(json.dumps(saved, indent=1))
        p = saved["proxies"][name]
        rho, low, high, n = rho_with_interval(p["fitness"], combined)
        per_eval = p["cpu_s"] / len(names)
        rhos = [rho_with_interval(p["fitness"], r)[0] for r in per_task]
        print(f"{name:<58} rho {rho:+.3f} [{low:+.3f}, {high:+.3f}] (n={n}; per reference task "
              f"{', '.join(f'{r:+.2f}' for r in rhos)}); {per_eval:6.2f} CPU-s/eval; rho per CPU-s "
              f"{rho / per_eval:+.3f}", flush=True)

    ranked = sorted((i for i, v in enumerate(combined) if v is not None), key=lambda i: -combined[i])
    top10 = set(ranked[:10])
    ladders = saved.setdefault("ladders", {})
    for name, (specs, ladder) in LADDERS.items():
        if args.proxies and name not in args.proxies:
            continue
        if name not in ladders:
            ladders[name] = ladder_of(specs, ladder, criteria, args.data_root)
            out_path.write_text(json.dumps(saved, indent=1))
        report_ladder(name, ladders[name], combined, top10, len(names))


if __name__ == "__main__":
    main()
