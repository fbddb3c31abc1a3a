"""Fitness evaluator throughput: evaluations per second, cache hit rate, and the n_jobs=2 / n_jobs=1 speed-up.

Both settings evaluate the same seeded batch of formulas (the classic criteria plus random trees, as in a
first generation) on fresh evaluators, side by side in one process, and must agree exactly.

    .venv/bin/python benchmarks/bench_evaluator.py [--formulas 48] [--tasks digits-vgg digits-resnet]
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import time

import torch

from prunevo.evolve.individuals import build_pset, gen_half_and_half, to_node
from prunevo.evolve.run import prepare_tasks
from prunevo.evolve.config import EvolutionConfig
from prunevo.fitness.evaluator import Evaluator
from prunevo.primitives import Formula, classic_formulas
from prunevo.pruning.criteria import FormulaCriterion


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
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t0 = time.perf_counter()
    prepared = prepare_tasks(EvolutionConfig(tasks=tuple(args.tasks)))
    print(f"tasks {' '.join(args.tasks)} prepared in {time.perf_counter() - t0:.1f}s "
          f"(torch {torch.__version__}, {os.cpu_count()} cores, {platform.processor() or platform.machine()})")
    criteria = batch(args.formulas, args.seed)
    results = {}
    for n_jobs in (1, 2):
        evaluator = Evaluator(prepared, n_jobs=n_jobs, seed=args.seed)
        if n_jobs > 1:  # start the worker pool outside the timed region, as a run does once
            evaluator.evaluate(criteria[:0])
            from joblib import Parallel, delayed
            Parallel(n_jobs=n_jobs)(delayed(abs)(i) for i in range(n_jobs))
        start = time.perf_counter()
        out = evaluator.evaluate(criteria)
        seconds = time.perf_counter() - start
        results[n_jobs] = (seconds, out, evaluator)
        s = evaluator.stats
        print(f"n_jobs={n_jobs}: {len(criteria)} formulas in {seconds:.2f}s = {len(criteria) / seconds:.2f} evals/s; "
              f"{s.jobs} fine-tunes ({s.jobs / seconds:.2f}/s); cache hit rate {s.hit_rate:.1%} "
              f"({s.hits}/{s.lookups} lookups); invalid {sum(not r.valid for r in out)}")
    same = [r.fitness for r in results[1][1]] == [r.fitness for r in results[2][1]]
    print(f"speed ratio n_jobs=2 / n_jobs=1: {results[1][0] / results[2][0]:.2f}x; identical fitness: {same}")
    # a second pass over the same formulas is served entirely by the mask cache
    evaluator = results[1][2]
    start = time.perf_counter()
    evaluator.evaluate(criteria)
    print(f"re-evaluation from the cache: {len(criteria) / (time.perf_counter() - start):.1f} evals/s")


if __name__ == "__main__":
    main()
