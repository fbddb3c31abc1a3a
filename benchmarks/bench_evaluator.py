"""Fitness evaluator throughput: distinct candidates per second for each way of evaluating, side by side.

Every mode evaluates the same seeded batch of formulas (the classic criteria plus random trees, as in a
first generation) on a fresh evaluator (empty cache), in one process, one thread per worker:

    naive            prune each candidate with Torch-Pruning, full measurement, 1 worker (the old evaluator)
    ladder           naive + the fidelity ladder
    batched          one skeleton per task and shape, weights gathered, candidates looped (CPU batching)
    fused            batched with the candidates fused into one vmapped pass (the GPU path; --fused)
    batched+ladder   both
    batched, 2 workers / batched+ladder, 2 workers / ... Dask, 2 workers

It checks that batched and naive agree exactly, that every top-rung result of a ladder equals the full
measurement, and that the worker count and backend change nothing.  Ratios are against ``naive``.

    .venv/bin/python benchmarks/bench_evaluator.py                         # digits tasks, no data needed
    .venv/bin/python benchmarks/bench_evaluator.py --ladder 0.125 --ladder-recal 2
    .venv/bin/python benchmarks/bench_evaluator.py --data-root ../shared/data \\
        --tasks lenet5@mnist:val=2000 small-resnet@mnist:val=2000 --formulas 32
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import time

import torch

from prunevo.evolve.individuals import build_pset, gen_half_and_half, to_node
from prunevo.fitness.execution import Execution
from prunevo.fitness.evaluator import Evaluator, EvaluatorStats
from prunevo.fitness.ladder import parse_ladder
from prunevo.fitness.task_spec import parse_task
from prunevo.fitness.tasks import prepare_task
from prunevo.primitives import Formula, classic_formulas
from prunevo.pruning.criteria import FormulaCriterion, RandomCriterion


def batch(n: int, seed: int) -> list[FormulaCriterion]:
    pset = build_pset()
    random.seed(seed)
    formulas = list(classic_formulas().values())
    while len(formulas) < n:
        formulas.append(Formula(to_node(gen_half_and_half(pset, 1, 4))))
    return [FormulaCriterion(f) for f in formulas]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formulas", type=int, default=48)
    parser.add_argument("--tasks", nargs="+", default=["digits-vgg", "digits-resnet"])
    parser.add_argument("--data-root", help="for tasks on MNIST, Fashion-MNIST, image folders")
    parser.add_argument("--ladder", default="0.25", help="ladder shares for the ladder modes (default: 0.25)")
    parser.add_argument("--ladder-recal", type=int, default=8,
                        help="BatchNorm recalibration batches at rung 0 (default: 8, as the full measurement)")
    parser.add_argument("--ladder-subset", type=int, default=500, help="validation images at rung 0 (default: 500)")
    parser.add_argument("--fused", action="store_true", help="also time the fused (vmap) pass on this device")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask row")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t0 = time.perf_counter()
    prepared = [prepare_task(parse_task(s.format(root=args.data_root)), args.data_root) for s in args.tasks]
    print(f"tasks {' '.join(args.tasks)} prepared in {time.perf_counter() - t0:.1f}s (torch {torch.__version__}, "
          f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, device {args.device})")
    criteria = batch(args.formulas, args.seed)
    ladder = parse_ladder(args.ladder, args.ladder_subset, args.ladder_recal)
    def run(batching: str, n_jobs: int = 1, backend: str = "loky") -> Execution:
        return Execution(n_jobs=n_jobs, backend=backend, device=args.device, batching=batching)

    modes = [("naive", run("off"), None), ("ladder", run("off"), ladder), ("batched", run("loop"), None)]
    if args.fused:
        modes.append(("fused", run("fused"), None))
    modes += [("batched+ladder", run("loop"), ladder), ("batched, 2 workers", run("loop", 2), None),
              ("batched+ladder, 2 workers", run("loop", 2), ladder)]
    if not args.no_dask:
        modes.append(("batched+ladder, Dask 2 workers", run("loop", 2, "dask"), ladder))
    results = {}
    for name, execution, rungs in modes:
        with Evaluator(prepared, execution=execution, seed=args.seed, ladder=rungs) as evaluator:
            if evaluator.n_jobs > 1:  # start the workers (and their imports) outside the timed region, as a
                evaluator.evaluate([RandomCriterion(10 ** 6 + i) for i in range(4)])  # run does once
                evaluator.stats = EvaluatorStats()
            start = time.perf_counter()
            out = evaluator.evaluate(criteria)
            seconds = time.perf_counter() - start
            s = evaluator.stats
        distinct = len({r.selection for r in out if r.selection})
        results[name] = (seconds, out)
        ratio = results["naive"][0] / seconds
        rungs = "/".join(map(str, s.rung_counts))
        print(f"{name:<32} {distinct} distinct candidates in {seconds:7.2f}s = {distinct / seconds:6.2f}/s "
              f"({ratio:5.2f}x naive); rungs {rungs}; {s.jobs} measurements in {s.batches} jobs", flush=True)
    full = [r.fitness for r in results["naive"][1]]
    for name, (_, out) in results.items():
        if "ladder" in name:
            same = all(r.fitness == f for r, f in zip(out, full) if r.complete)
        else:
            same = [r.fitness for r in out] == full
        exact = "equal" if same else "DIFFERENT"
        if name == "fused":
            worst = max(abs(r.fitness - f) for r, f in zip(out, full))
            exact = f"within {worst:.4f}"
        print(f"  {name:<32} fitness vs naive: {exact}")


if __name__ == "__main__":
    main()
