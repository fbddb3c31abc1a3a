"""The search's own contribution, per run: the evolution gain and the winner's curse, side by side.

For each run directory (``prunevo evolve ... --rescore-seeds 5``) it prints

* its search settings (population x generations, racing, node mutation),
* the evolution seconds (the log's sum; the re-scoring is not in it) and the last generation in which the
  hall of fame's best improved (``last gain``; 0 = the seeds were never beaten on validation),
* the winner and the best seed (chosen on validation as the winner is), the **evolution gain** (the winner
  minus the best seed on held-out data, paired by re-scoring seed, 95% t interval) and the **winner's curse**
  (validation fitness minus held-out fitness) of both.

With ``--rung RUN`` it also measures, on that run's first task, how well cheaper measurements rank the
formulas the run evaluated (its hall of fame, its last population and its seeds): Spearman's rho with a 95%
bootstrap interval of each against the task's full measurement on another calibration draw, and CPU-seconds
per evaluation.  The rows: the full measurement on its own draw 0 (the noise between two draws: the ceiling
of any one-draw fitness), the cheap rung (``--rung-images`` validation images, ``--rung-recal`` BatchNorm
batches), and the mean of ``race_draws`` draws (what racing selects on).

    .venv/bin/python benchmarks/search_gain.py RUN_DIR... [--rung RUN_DIR]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prunevo.runs.result import load_run  # noqa: E402
from prunevo.primitives import Formula  # noqa: E402


def describe(run_dir: Path) -> list[str]:
    run = load_run(run_dir)
    c = run.config
    seconds = sum(float(r.get("seconds", 0)) for r in run.log)
    hof_best = [r.get("hall_of_fame_best") or r["best"] for r in run.log]
    last = max((r["generation"] for r, prev in zip(run.log[1:], hof_best) if float(
        r.get("hall_of_fame_best") or r["best"]) > float(prev) + 1e-12), default=0)
    out = [f"{run_dir}: {c.population} x {c.generations + 1} generations, race {c.race} x {c.race_draws} draws, "
           f"node mutation {c.node_mutation:g}; evolution {seconds / 60:.1f} min; last gain on validation in "
           f"generation {last}; distinct new selections per generation: "
           f"{' '.join(str(r['new_selections']) for r in run.log)}"]
    seed, gain, curse = (run.evolution or {}).get("best_seed"), run.evolution_gain, run.winners_curse or {}
    won = run.winner_rescored
    mean = statistics.fmean(run.best.draws) if run.best.draws else run.best.fitness
    out.append(f"    winner    {Formula.parse(run.best.text).simplified.text}: validation {mean:.4f} "
               f"(selected on {run.best.fitness:.4f}), held-out {won.fitness.text() if won else 'not re-scored'}")
    if seed and run.best_seed is not None:
        out.append(f"    best seed {seed['name']} ({seed['allocation']}): validation {seed.get('mean', seed['validation']):.4f} "
                   f"(selected on {seed['validation']:.4f}), held-out {run.best_seed.fitness.text()}")
    hof_curse = [(statistics.fmean(e.draws) if e.draws else e.fitness) - e.rescored["fitness"]["mean"]
                 for e in run.hall_of_fame if e.rescored and e.rescored["fitness"]["mean"] is not None]
    out.append(f"    evolution gain {gain.pp() if gain else 'not measured'}; winner's curse "
               + ", ".join(f"{k} {100 * v:+.1f} pp" for k, v in curse.items())
               + (f", hall of fame mean {100 * statistics.fmean(hof_curse):+.1f} pp over {len(hof_curse)}"
                  if hof_curse else ""))
    classic = run.best_rescored_classic
    if classic is not None and won is not None:
        out.append(f"    (best classic on held-out data: {classic.label} {classic.fitness.text()})")
    return out


def rung_fidelity(run_dir: Path, images: int, recal: int, boot: int) -> list[str]:
    """Spearman rho of cheaper measurements against the full one on another draw (see the module docstring)."""
    import numpy as np
    from scipy import stats

    from prunevo.evolve.engine import seed_formulas
    from prunevo.fitness.evaluator import Evaluator
    from prunevo.fitness.ladder import Ladder
    from prunevo.fitness.racing import Race
    from prunevo.pruning.criteria import FormulaCriterion
    from prunevo.utils import torch_threads

    run = load_run(run_dir)
    config = replace(run.config, tasks=run.config.tasks[:1])
    prepared = config.prepare(progress=False)
    texts = list(dict.fromkeys([e.text for e in run.hall_of_fame]
                               + [s["text"] for s in json.loads((run_dir / "checkpoint.json").read_text())["population"]]
                               + [f.text for f in seed_formulas(config.allocation == "global")]))
    criteria = [FormulaCriterion(Formula.parse(t)) for t in texts]
    draws = max(2, config.race_draws)
    rows, lines = {}, []
    with torch_threads(1):
        evaluator = Evaluator(prepared, seed=config.seed)
        race = Race(prepared, draws + 1, seed=config.seed + 1, backend=evaluator.backend)
        reference = [r.fitness for r in race.measure(criteria)[-1]]  # a draw no other row reads
        for p in prepared:  # statistics computed before the clocks start: every row reuses them
            p.calibration.stats
        t0 = time.process_time()
        rows["full, one draw"] = ([r.fitness for r in evaluator.evaluate(criteria, full=True)],
                                  (time.process_time() - t0) / len(criteria))
        cheap = Evaluator(prepared, seed=config.seed, ladder=Ladder((1e-9,), images, recal), backend=evaluator.backend)
        t0 = time.process_time()
        cheap.evaluate(criteria)  # rung 0 for every selection (and the top rung for the best one: timed too)
        plans = [cheap.mask_plan(c) for c in criteria]
        rows[f"cheap rung ({images} images, {recal} BN batch{'es' if recal > 1 else ''})"] = (
            [cheap._result(p, 0).fitness for p in plans], (time.process_time() - t0) / len(criteria))
        extra = race.measure(criteria)[:draws - 1]  # the race's draws 1.. (draw `draws` is the reference)
        rows[f"mean of {draws} draws (racing)"] = (
            [statistics.fmean([a, *(d[i].fitness for d in extra)]) for i, a in enumerate(rows["full, one draw"][0])],
            rows["full, one draw"][1] * draws)
        evaluator.close()
    ref = np.array(reference)
    lines.append(f"rank fidelity on {prepared[0].task.name}: {len(criteria)} formulas of {run_dir} "
                 f"(its hall of fame, last population and seeds), against the full measurement on another draw")
    for name, (values, cost) in rows.items():
        v = np.array(values)
        rho = stats.spearmanr(v, ref).statistic
        ci = stats.bootstrap((v, ref), lambda a, b: stats.spearmanr(a, b).statistic, paired=True,
                             n_resamples=boot, random_state=0, method="percentile").confidence_interval
        lines.append(f"    {name:<40} rho {rho:.3f} [{ci.low:.3f}, {ci.high:.3f}]  {cost:.2f} CPU-s per formula")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (re-scored)")
    parser.add_argument("--rung", type=Path, help="measure rank fidelity of the cheap rung and of racing on this run")
    parser.add_argument("--rung-images", type=int, default=500, help="validation images of the cheap rung")
    parser.add_argument("--rung-recal", type=int, default=1, help="BatchNorm batches of 256 of the cheap rung")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of rho's interval")
    args = parser.parse_args()
    for run_dir in args.runs:
        print("\n".join(describe(run_dir)), flush=True)
    if args.rung:
        print("\n".join(rung_fidelity(args.rung, args.rung_images, args.rung_recal, args.bootstrap)))


if __name__ == "__main__":
    main()
