"""An evolution run: prepare the tasks, evolve, and keep the run directory up to date every generation."""
from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from prunevo.errors import RunError
from prunevo.evolve.engine import (
    evaluate_population,
    initial_population,
    make_toolbox,
    redraw_repeats,
    restore,
    snapshot,
    vary,
)
from prunevo.evolve.individuals import build_pset
from prunevo.evolve.plot import plot_fitness
from prunevo.evolve.racing import Racing, choose_best_seed
from prunevo.fitness.evaluator import Evaluator
from prunevo.fitness.rescore import RescoredRow, rescore
from prunevo.fitness.scoring import baselines_from_json, baselines_to_json, score_with, variant_baselines
from prunevo.fitness.tasks import PreparedTask
from prunevo.progress import progress_bar
from prunevo.pruning.criteria import FormulaCriterion
from prunevo.runs import rundir
from prunevo.runs.checkpoint import Checkpoint
from prunevo.runs.config import RESUMABLE, EvolutionConfig, resume_differences
from prunevo.runs.hall_of_fame import Entry, HallOfFame, ParetoFront
from prunevo.runs.result import RunResult, saved_config
from prunevo.training.config import resolve_device
from prunevo.utils import atomic_write_json

log = logging.getLogger(__name__)


def evaluate_baselines(evaluator: Evaluator, random_seeds: int, allocations: tuple[str, ...] = ()) -> dict[str, dict]:
    """Fitness of every classic criterion and Torch-Pruning importance, and of random averaged over
    ``random_seeds`` draws, under the tasks' allocation and each of ``allocations`` that differs (the
    ``baselines.json`` form)."""
    rows = score_with(evaluator, [], baselines=True, random_seeds=random_seeds)
    return baselines_to_json(rows + variant_baselines(evaluator, allocations, random_seeds))


def _entry(text: str, result, generation: int, complexity: int, raced=None) -> Entry:
    """A hall-of-fame entry from a full measurement, or (``raced``: an ``evolve.racing.Raced``) from its race."""
    if raced is not None:
        return Entry(text, raced.fitness, complexity, generation, raced.accuracy, raced.relative,
                     selection=result.selection or "", draws=[round(d, 6) for d in raced.draws])
    return Entry(text, result.fitness, complexity, generation, result.accuracy, result.relative,
                 selection=result.selection or "")


def rescore_run(run_dir: Path, config: EvolutionConfig, hof: HallOfFame, prepared: list[PreparedTask],
                check: list[PreparedTask], seeds: int, progress: bool = False,
                best_seed: dict | None = None) -> tuple[list[RescoredRow], dict]:
    """Re-score the hall of fame, the best seed (a formula, when it is not a baseline) and every baseline on
    fresh seeds and held-out data; writes ``rescored.json`` (with the "evolution": the winner and the best seed
    as validation chose them), adds each entry's re-scoring to ``hall_of_fame.json`` and the checkpoint.
    Returns the rows and the "evolution"."""
    if progress:
        print(f"re-scoring {len(hof.entries)} formulas and the baselines on {seeds} fresh seeds and held-out "
              f"data{f' (check tasks: {len(check)})' if check else ''}...", flush=True)
    common = dict(seeds=seeds, seed=config.seed, execution=config.execution, allocations=config.baseline_allocations)
    seed_rows = [best_seed["name"]] if best_seed and best_seed["kind"] == "seed" else []
    rows = rescore([e.text for e in hof.entries], prepared, check, progress=progress, seed_formulas=seed_rows, **common)
    winner = hof.entries[0]
    if config.baseline_allocations:  # where its gain comes from: its own widths or not
        rows += rescore([winner.text], prepared, check, variants_only=True, **common)
    evolution = {"winner": winner.text, "winner_validation": winner.fitness, "best_seed": best_seed}
    by_name = {r.name: r for r in rows if r.kind == "formula"}
    for entry in hof.entries:
        entry.rescored = by_name[entry.text].to_json()
    state = Checkpoint.read(run_dir, hall_of_fame_size=config.hall_of_fame_size)
    state.hall_of_fame = hof
    state.rescored = {"seeds": seeds, "tasks": list(config.tasks), "check_tasks": list(config.check_tasks),
                      "rows": [r.to_json() for r in rows], "evolution": evolution}
    state.write(run_dir)
    atomic_write_json(run_dir / "rescored.json", state.rescored)
    atomic_write_json(run_dir / "hall_of_fame.json", [e.describe() for e in hof.entries])
    return rows, evolution


def rescore_saved(run_dir: Path, config: EvolutionConfig, progress: bool = False) -> None:
    """``rescore_run`` on a saved run (``prunevo show RUN --rescore``), ``config`` being its saved config with
    the re-scoring's settings: the best seed is chosen again from the run's fitness cache and race.  The caller
    holds the run's lock.  Raises RunError for a run with nothing evaluated, DataError for missing data."""
    state = Checkpoint.read(run_dir, hall_of_fame_size=config.hall_of_fame_size)
    hof = state.hall_of_fame
    if not hof.entries:
        raise RunError(f"{run_dir} has no evaluated formulas yet")
    prepared = config.prepare(progress=progress)
    evaluator = Evaluator(prepared, execution=config.execution, seed=config.seed, ladder=config.ladder_spec(),
                          cache=state.cache)
    racing = Racing.start(config, evaluator, state.race)
    try:
        best_seed = choose_best_seed(config, evaluator, racing, state.baselines)
    finally:
        if racing is not None:
            racing.close()
        evaluator.close()
    checks = config.prepare(config.check_task_list(), progress)
    rescore_run(run_dir, config, hof, prepared, checks, config.rescore_seeds, progress, best_seed)


PLOT_EVERY_S = 20.0  # fitness.png is redrawn at most this often (and after the last generation): a plot costs
# about as much as a generation of the default run


def _write_outputs(run_dir: Path, state: Checkpoint, config: EvolutionConfig, plot: bool = True) -> None:
    """The run directory after a generation: the checkpoint, then the files people read."""
    state.write(run_dir)
    rundir.write_log(run_dir / "log.csv", state.log)
    atomic_write_json(run_dir / "hall_of_fame.json", [e.describe() for e in state.hall_of_fame.entries])
    atomic_write_json(run_dir / "pareto.json", [e.describe() for e in state.pareto.front])
    atomic_write_json(run_dir / "baselines.json", state.baselines)
    baseline_fitness = {(r.label if r.variant else r.name): r.fitness for r in baselines_from_json(state.baselines)
                        if r.comparable}
    if plot:
        plot_fitness(state.log, baseline_fitness, run_dir / "fitness.png", f"tasks: {', '.join(config.tasks)}")


def _log_row(generation: int, population, fresh: list, evaluator: Evaluator, seconds: float, jobs: int,
             new_selections: int, redrawn: int, rungs_before: list[int]) -> dict:
    fits = [ind.fitness.values[0] for ind in population]
    best = max(population, key=lambda ind: ind.fitness.values[0])
    evaluated = len(fresh)
    selections = len({r.selection for _, _, r in fresh if r.selection is not None})
    return {
        "generation": generation, "evaluations": evaluated, "jobs": jobs, "selections": selections,
        "new_selections": new_selections, "redrawn": redrawn,
        # selections measured at each fidelity rung this generation ("64/16": 64 at rung 0, 16 at the top)
        "rungs": "/".join(str(n - (rungs_before[i] if i < len(rungs_before) else 0))
                          for i, n in enumerate(evaluator.stats.rung_counts)),
        "best": max(fits), "median": statistics.median(fits), "mean": statistics.fmean(fits),
        "valid": sum(f > 0 for f in fits) / len(fits), "mean_size": statistics.fmean(len(i) for i in population),
        "cache_hit_rate": round(evaluator.stats.hit_rate, 4),
        "evals_per_second": round(evaluated / seconds, 3) if seconds > 0 else 0.0,
        "selections_per_second": round(new_selections / seconds, 3) if seconds > 0 else 0.0,
        "seconds": round(seconds, 3), "best_formula": best.formula.text,
    }


def evolve(config: EvolutionConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True,
           on_generation: Callable[[int], None] | None = None,
           prepared: list[PreparedTask] | None = None) -> RunResult:
    """Run (or resume) an evolution of pruning criteria, writing the run directory after every generation.

    The run directory is locked while it runs: a second process on it stops with a clear error.  Same config
    and seed, same run, whatever the workers and however often it was stopped and resumed.

    Args:
        config: the tasks (fitness), the genetic programming and where jobs run.
        run_dir: the run's directory: ``config.json``, ``checkpoint.json``, ``log.csv``, ``hall_of_fame.json``,
            ``pareto.json``, ``baselines.json``, ``fitness.png`` (and ``rescored.json`` when re-scored).
        resume: continue the run in ``run_dir`` (``config`` may change only ``runs.config.RESUMABLE``).
        progress: a progress bar per generation (and while base nets train).
        on_generation: called with each completed generation's number.
        prepared: the tasks already prepared (``config.prepare()``), to share them between runs.

    Returns:
        The run: hall of fame, Pareto front, baselines, per-generation log and, with ``config.rescore_seeds``,
        the re-scoring on fresh seeds and held-out data.

    Raises:
        RunError: a directory in use, a run already there without ``resume``, a resumed config that changes
            more than ``RESUMABLE`` allows.
        DataError: missing data.
        ModelError, PrunevoError: bad settings.

    Example (one generation of 4 formulas on the embedded digits, one-shot; base net trained on first use):
        >>> import tempfile
        >>> from prunevo import EvolutionConfig, Execution, evolve
        >>> config = EvolutionConfig(tasks=("small-vgg@digits:epochs=0",), population=4, generations=1,
        ...                          rescore_seeds=0, baseline_allocations=(), execution=Execution(n_jobs=1))
        >>> result = evolve(config, tempfile.mkdtemp() + "/run", progress=False)
        >>> len(result.log), result.config.regime, result.best.fitness > 0
        (2, 'one-shot', True)
    """
    run_dir = Path(run_dir)
    lock = rundir.RunLock(run_dir)
    if run_dir.is_dir():
        lock.acquire()  # before anything is read or prepared: fail fast when another process holds it
    try:
        return _evolve(config, run_dir, resume, progress, on_generation, prepared, lock)
    finally:
        lock.release()


def _resumable(saved: EvolutionConfig, config: EvolutionConfig) -> EvolutionConfig:
    """``config`` for resuming a run saved with ``saved`` (``runs.config.resume_differences``): the changes are
    logged; a conflict raises RunError naming the parameters (nested ones by path: execution.n_jobs)."""
    diff = resume_differences(saved, config)
    if diff.conflicts:
        shown = "; ".join(f"{{param:{p}}} {new!r} (the run has {old!r})" for p, (old, new) in diff.conflicts.items())
        raise RunError(f"a resumed run keeps its config, and this one differs: {shown}; allowed to change on "
                       f"resume: {', '.join(f'{{param:{p}}}' for p in RESUMABLE)}")
    for path, (old, new) in diff.changes.items():
        log.info("resume: %s %r -> %r", path, old, new)
    return config


def _evolve(config: EvolutionConfig, run_dir: Path, resume: bool, progress: bool,
            on_generation: Callable[[int], None] | None, prepared: list[PreparedTask] | None,
            lock: rundir.RunLock) -> RunResult:
    resolve_device(config.execution.device)  # before base nets train: an unknown or absent device fails now
    state: Checkpoint | None = None
    if resume:
        config = _resumable(saved_config(run_dir), config)
        state = Checkpoint.read(run_dir, hall_of_fame_size=config.hall_of_fame_size)
        if config.generations < state.generation:  # before config.json is rewritten: the run keeps what it did
            raise RunError(f"{run_dir} has run {state.generation} generations; a resumed run can only extend it: "
                           f"allowed {{param:generations}} >= {state.generation}, got {config.generations}")
    elif (run_dir / "checkpoint.json").exists() or (run_dir / "config.json").exists():
        raise RunError(f"{run_dir} already holds a run; pass {{param:resume}} to continue it or choose another "
                       f"{{param:run_dir}}")
    prepared = prepared or config.prepare(progress=progress)  # bad data fails here, before the run directory exists
    check = config.prepare(config.check_task_list(), progress) if config.rescore_seeds else []
    run_dir.mkdir(parents=True, exist_ok=True)
    if not lock.held:
        lock.acquire()
    roles = {p.task.name: p.task.roles(p.data) for p in prepared + check}
    atomic_write_json(run_dir / "config.json", {**config.to_json(), "data": roles})
    evaluator = Evaluator(prepared, execution=config.execution, seed=config.seed, ladder=config.ladder_spec(),
                          cache=state.cache if state else None)
    if state and state.evaluator is not None:
        evaluator.stats = state.evaluator
    pset = build_pset()
    loop = _Loop(config, run_dir, evaluator, make_toolbox(config, pset),
                 Racing.start(config, evaluator, state.race if state else None))
    if state:
        population, start = restore(state.population, pset), state.generation + 1
    else:
        population, start = initial_population(config, pset), 0
    bar = progress_bar(config.generations + 1, "evolve", "gen", progress, initial=start)
    best_seed = None
    try:
        if state is None:  # generation 0 is written with the baselines, measured once per run
            baselines = evaluate_baselines(evaluator, config.random_baseline_seeds, config.baseline_allocations)
            state = Checkpoint(generation=-1, population=[], hall_of_fame=HallOfFame(config.hall_of_fame_size),
                               pareto=ParetoFront(), cache={}, log=[], baselines=baselines)
        _generations(loop, state, population, start, bar, on_generation)
        bar.close()
        if config.rescore_seeds and state.hall_of_fame.entries:
            best_seed = choose_best_seed(config, evaluator, loop.racing, state.baselines)
    finally:
        bar.close()
        if loop.racing is not None:
            loop.racing.close()
        evaluator.close()
    hof, rescored, evolution = state.hall_of_fame, [], None
    if config.rescore_seeds and hof.entries:
        rescored, evolution = rescore_run(run_dir, config, hof, prepared, check, config.rescore_seeds, progress,
                                          best_seed)
    return RunResult(run_dir, config, hof.entries, state.pareto.front, state.baselines, state.log, rescored, roles,
                     evolution)


@dataclass(frozen=True)
class _Loop:
    """What every generation uses and does not change: the run's settings and directory, the evaluator, DEAP's
    toolbox (selection, crossover, mutation), and the race (None when the run does not race)."""

    config: EvolutionConfig
    run_dir: Path
    evaluator: Evaluator
    toolbox: Any
    racing: Racing | None


def _generations(loop: _Loop, state: Checkpoint, population: list, start: int, bar,
                 on_generation: Callable[[int], None] | None) -> None:
    """Generations ``start`` to ``config.generations`` of a generational GP loop (after DEAP's ``eaSimple``),
    updating ``state`` and rewriting the run directory after each.

    Args:
        loop: the run's fixed parts.
        state: the checkpoint so far (its hall of fame, Pareto front, log and baselines), updated in place.
        population: the DEAP individuals of generation ``start - 1`` (or the initial population when 0).
        start: the first generation to run.
        bar: the progress bar, advanced once per generation.
        on_generation: called with each completed generation's number.

    The loop, per generation::

        if generation > 0:
            population = vary(population)            # tournament, crossover, mutation, elitism
            redraw offspring whose selection was already measured
        evaluate every individual without a fitness   # cached by selection, in parallel
        offer the complete ones (or, racing, the raced leaders) to the hall of fame and Pareto front
        log the generation, write the checkpoint and the run's files
    """
    config, evaluator, racing = loop.config, loop.evaluator, loop.racing
    plotted = -math.inf
    for generation in range(start, config.generations + 1):
        t0, jobs0 = time.perf_counter(), evaluator.stats.jobs
        rungs0 = list(evaluator.stats.rung_counts)
        # vary: offspring of the previous generation, with repeats of measured selections redrawn
        redrawn = 0
        if generation > 0:
            population = vary(population, config, loop.toolbox, generation)
            redrawn = redraw_repeats(population, evaluator, loop.toolbox, config.redraw_tries)
        # evaluate: what is new costs jobs, the rest comes from the cache
        plans = [evaluator.mask_plan(FormulaCriterion(ind.formula)) for ind in population if not ind.fitness.valid]
        new_selections = len({p.selection for p in plans if evaluator.is_new(p)})
        fresh = evaluate_population(population, evaluator)
        # select for the hall of fame: raced formulas only, or complete measurements (never lower ladder rungs)
        if racing is not None:
            offers = [_entry(f.text, result, generation, len(ind), raced)
                      for ind, f, result, raced in racing.run(population, fresh)]
        else:
            offers = [_entry(f.text, result, generation, len(ind)) for ind, f, result in fresh
                      if result.valid and result.complete]
        for entry in offers:
            state.hall_of_fame.offer(entry)
            state.pareto.offer(entry)
        # record: the log row, the checkpoint and the run's files
        row = _log_row(generation, population, fresh, evaluator, time.perf_counter() - t0,
                       evaluator.stats.jobs - jobs0, new_selections, redrawn, rungs0)
        row["raced"] = len(offers) if racing is not None else 0  # formulas raced this generation
        best = state.hall_of_fame.best
        row["hall_of_fame_best"] = best.fitness if best else None
        state.log.append(row)
        state.generation, state.population = generation, snapshot(population)
        state.cache, state.evaluator = evaluator.cache, evaluator.stats
        state.race = racing.to_json() if racing is not None else None
        state.rescored = None  # a re-scoring describes the hall of fame of an earlier generation
        plot = generation == config.generations or time.monotonic() - plotted >= PLOT_EVERY_S
        _write_outputs(loop.run_dir, state, config, plot)
        plotted = time.monotonic() if plot else plotted
        bar.set_postfix(best=f"{row['best']:.4f}", new=row["new_selections"], rungs=row["rungs"],
                        hit=f"{row['cache_hit_rate']:.0%}", evals_s=f"{row['evals_per_second']:.1f}")
        bar.update(1)
        if on_generation is not None:
            on_generation(generation)
