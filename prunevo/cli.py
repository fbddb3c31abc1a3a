"""Command line: prunevo evolve | show | export | score | tasks | criteria | train | apply | compare | benchmark.

Bad input ends with one line, ``prunevo: error: ...``, and exit code 2; never a traceback.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from prunevo.cli_transfer import TRANSFER_COMMANDS, add_transfer_commands
from prunevo.errors import PrunevoError

EXIT_USAGE = 2


def _add_task_options(p: argparse.ArgumentParser) -> None:
    from prunevo.fitness.task_spec import DEFAULT_TASKS

    p.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), metavar="TASK",
                   help="fitness tasks, each MODEL@DATASET[:key=value,...] with any model and dataset that "
                        "'prunevo apply' accepts (lenet5@mnist, small-vgg@imagefolder:PATH:size=32, "
                        "resnet20@fashion-mnist:macs=0.5,epochs=1,train=4000,val=2000,weight=2), or a short name "
                        "such as digits-vgg; 'prunevo tasks' lists the options and defaults; fitness is the "
                        f"weighted geometric mean over the tasks (default: {' '.join(DEFAULT_TASKS)})")
    p.add_argument("--task-weights", nargs="+", type=float, metavar="W",
                   help="weights of the tasks in the geometric mean, one per task; they replace the tasks' "
                        "weight= options (default: those, else equal)")
    p.add_argument("--prune-ratio", type=float,
                   help="fraction of channels removed in every task without its own macs= or ratio= "
                        "(default: the task's, 0.75 on digits and MNISTs)")
    p.add_argument("--allocation", choices=["uniform", "global", "random-search"],
                   help="uniform = remove the same fraction in every layer (the default); global = rank all channels "
                        "together with a per-layer cap; random-search = per task, sample 16 per-layer "
                        "configurations at the uniform selection's MACs, the criterion picks channels within layers, "
                        "and the configuration best after BatchNorm recalibration is fine-tuned (slower fitness)")
    p.add_argument("--group-reduction", choices=["mean", "sum", "max"],
                   help="how scores of residual-coupled layers combine into one group score (default: mean)")
    p.add_argument("--finetune-epochs", type=float,
                   help="epochs of fine-tuning after pruning; 0 = BatchNorm recalibration only")
    p.add_argument("--data-root", help="folder with MNIST/ and FashionMNIST/ in torchvision's layout "
                                       "(needed by tasks on mnist, fashion-mnist, cifar10...)")
    p.add_argument("--cache-dir", help="where base networks and extracted data are cached "
                                       "(default: $PRUNEVO_CACHE or ~/.cache/prunevo)")
    p.add_argument("--n-jobs", type=int, default=2,
                   help="parallel fitness workers: local processes, or Dask/Ray workers used (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the run: same seed, same result (default: 0)")
    p.add_argument("--batching", choices=["auto", "loop", "fused", "off"], default="auto",
                   help="how a worker scores the candidates of one task: loop = one pruned skeleton per shape and "
                        "each candidate's weights gathered into it (no dependency graph per candidate); fused = "
                        "--stack candidates in one vmapped pass (grouped convolutions, for GPUs; equal to loop "
                        "within floating-point tolerance); off = prune each candidate with Torch-Pruning; "
                        "auto = fused on CUDA, loop on the CPU (default: auto)")
    p.add_argument("--stack", type=int, default=16, help="candidates per fused pass, padded to this size (default: 16)")
    p.add_argument("--device", default="cpu", help="where fitness jobs run: cpu, cuda, cuda:N (default: cpu)")
    p.add_argument("--backend", choices=["loky", "dask", "ray"], default="loky",
                   help="where workers run: loky = local processes; dask = a Dask cluster (--address of a "
                        "scheduler, e.g. dask-jobqueue on SLURM; without it a local one); ray = a Ray cluster "
                        "(--address auto on a Ray node; without it a local one); fitness never depends on it "
                        "(default: loky; dask and ray need prunevo[dask] / prunevo[ray])")
    p.add_argument("--address", help="address of a running Dask scheduler (tcp://host:8786) or Ray cluster (auto)")


def _criterion_names() -> str:
    from prunevo.pruning.criteria import criterion_names

    return criterion_names()


def _parser() -> argparse.ArgumentParser:
    from prunevo.evolve.config import EvolutionConfig
    from prunevo.evolve.presets import PRESETS
    from prunevo.fitness.task_spec import DEFAULT_CHECK_TASKS

    parser = argparse.ArgumentParser(prog="prunevo", description="Discover channel-pruning criteria by "
                                     "genetic programming, and score them against the classic ones.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log base-net training and other details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("evolve", help="run (or resume) an evolution", description="Evolve pruning formulas. "
                       "The run directory gets config, checkpoint, log.csv, hall_of_fame.json, pareto.json, "
                       "baselines.json (every classic criterion, Torch-Pruning's importances and random, on the same "
                       "tasks and budget) and fitness.png, all updated every generation.")
    _add_task_options(p)
    p.add_argument("--population", type=int, default=EvolutionConfig.population,
                   help=f"individuals per generation (default: {EvolutionConfig.population})")
    p.add_argument("--generations", type=int, default=EvolutionConfig.generations,
                   help=f"generations after the initial one (default: {EvolutionConfig.generations})")
    p.add_argument("--run-dir", default="runs/latest", help="run directory (default: runs/latest)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir from its last checkpoint (--generations may extend it)")
    p.add_argument("--max-height", type=int, default=8, help="tree height limit for variation (default: 8)")
    p.add_argument("--elitism", type=int, default=2, help="best individuals copied unchanged (default: 2)")
    p.add_argument("--hall-of-fame", type=int, default=10, help="distinct formulas kept (default: 10)")
    p.add_argument("--no-seed-classics", action="store_true", help="start from random trees only")
    p.add_argument("--redraw-tries", type=int, default=5,
                   help="mutate an offspring again when it selects the same channels on every task as a candidate "
                        "already evaluated, up to this many times, so each generation explores new selections "
                        "(0 = never; default: 5)")
    p.add_argument("--rescore-seeds", type=int, default=3,
                   help="at the end, re-score the hall of fame and every baseline on this many fresh seeds (each its "
                        "own calibration batch, BatchNorm re-estimation and fine-tune) and on held-out images "
                        "evolution never used (the test split, or half of the validation split); the run's best is "
                        "the best after re-scoring, and it is compared with the best classic paired by seed, with "
                        "95%% intervals (0 = skip; default: 3)")
    p.add_argument("--check-tasks", nargs="+", default=None, metavar="TASK",
                   help="tasks never used for fitness (same syntax as --tasks), scored at the end like the "
                        "re-scoring, with a paired verdict against the best classic on each; 'none' for none "
                        "(default: with the default --tasks and re-scoring on, "
                        f"{' '.join(DEFAULT_CHECK_TASKS)}: a network family no default task uses)")
    p.add_argument("--ladder", default="off", metavar="SHARES",
                   help="fidelity ladder: every new selection is first scored by BatchNorm-recalibrated accuracy "
                        "without fine-tuning on --ladder-subset validation images (rung 0), and only the best share "
                        "climbs: 0.25 = the best quarter gets the task's full fine-tune; 0.5,0.5 = halves over "
                        "three rungs (the middle one fine-tunes half as long); only full measurements enter "
                        "the hall of fame (default: off)")
    p.add_argument("--ladder-subset", type=int, default=500,
                   help="validation images scored at rung 0 of the ladder, stratified (default: 500)")
    p.add_argument("--ladder-recal", type=int, default=8,
                   help="batches of 256 training images that recalibrate BatchNorm at rung 0 (default: 8, as the "
                        "full measurement; 2 ranked as well in docs/BENCHMARKS.md's fidelity table at a third "
                        "less cost)")
    p.add_argument("--preset", choices=list(PRESETS),
                   help="named settings; options given on the command line win; data from --data-root (default "
                        "../shared/data, with MNIST/, FashionMNIST/ and imagenette2/). "
                        + ". ".join(f"{name}: {preset.describe()}" for name, preset in PRESETS.items())
                        .replace("%", "%%"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("show", help="print a run's hall of fame, Pareto front, baselines and re-scoring")
    p.add_argument("run", help="run directory")
    p.add_argument("--top", type=int, default=10, help="hall-of-fame rows to print (default: 10)")
    p.add_argument("--rescore", action="store_true",
                   help="re-score the hall of fame and every baseline now (fresh seeds, held-out data, the run's "
                        "check tasks), save it in the run directory, and print it")
    p.add_argument("--rescore-seeds", type=int,
                   help="seeds for --rescore (default: the run's --rescore-seeds, or 3)")
    p.add_argument("--n-jobs", type=int, default=None, help="parallel fine-tunes for --rescore (default: the run's)")
    p.add_argument("--data-root", help="data root for --rescore when the run's has moved")

    p = sub.add_parser("export", help="export a formula of a run")
    p.add_argument("run", help="run directory")
    p.add_argument("--format", choices=["json", "sympy", "latex", "python", "text"], default="json",
                   help="output format (default: json)")
    p.add_argument("--rank", type=int, default=None,
                   help="hall-of-fame rank to export, 1 = best fitness during evolution (default: the run's best: "
                        "the best after re-scoring when the run was re-scored, else rank 1)")
    p.add_argument("--simplified", action="store_true", help="export the SymPy-simplified formula")
    p.add_argument("-o", "--output", help="write to this file (atomically) instead of standard output")

    p = sub.add_parser("score", help="score formulas beside the classic criteria and random",
                       description="Prune each task's base net with each formula, fine-tune, and print the "
                                   "fitness next to every classic criterion, every Torch-Pruning importance and "
                                   "random, with the gap to the best of the classic and Torch-Pruning criteria. "
                                   "A criterion that needs what a task's net lacks (BatchNorm, a gradient) shows "
                                   "n/a there and is left out of its geometric mean and of the best classic.")
    p.add_argument("formulas", nargs="+", metavar="FORMULA",
                   help="formula text ('l1(W) / (std(F) + 0.05)'), a named criterion (" + _criterion_names()
                        + "; see 'prunevo criteria'), or a .json/.txt file")
    _add_task_options(p)
    p.add_argument("--no-baselines", action="store_true", help="score only the given formulas")

    p = sub.add_parser("tasks", help="task syntax, options and short names; or describe given task specs",
                       description="Without arguments: the MODEL@DATASET[:key=value,...] syntax, its options and the "
                                   "short names with their defaults.  With specs: what each one prunes and trains.")
    p.add_argument("specs", nargs="*", metavar="TASK", help="task specs to describe (e.g. lenet5@mnist:macs=0.5)")
    sub.add_parser("criteria", help="list the named criteria: classic formulas, Torch-Pruning importances, random",
                   description="Every name that --formula/--formulas and score accept besides formula text, with "
                               "what it computes and, for Torch-Pruning's importances, whether the formula "
                               "grammar can express it.")
    add_transfer_commands(sub)
    return parser


def _config(args):
    from prunevo.evolve.config import EvolutionConfig, TaskOverrides
    from prunevo.training import resolve_device

    return EvolutionConfig(
        tasks=tuple(args.tasks), task_weights=tuple(args.task_weights) if args.task_weights else None,
        overrides=TaskOverrides(args.prune_ratio, None, args.group_reduction, args.finetune_epochs,
                                args.allocation),
        population=args.population, generations=args.generations, seed=args.seed, n_jobs=args.n_jobs,
        max_height=args.max_height, elitism=args.elitism, hall_of_fame_size=args.hall_of_fame,
        seed_classics=not args.no_seed_classics, data_root=args.data_root, cache_dir=args.cache_dir,
        redraw_tries=getattr(args, "redraw_tries", 5), rescore_seeds=getattr(args, "rescore_seeds", 3),
        check_tasks=_check_tasks(args), ladder=_ladder(getattr(args, "ladder", "off")),
        ladder_subset=getattr(args, "ladder_subset", 500), ladder_recal=getattr(args, "ladder_recal", 8),
        batching=args.batching, stack=args.stack,
        device=resolve_device(args.device), backend=args.backend, address=args.address,
    )


def _check_tasks(args) -> tuple[str, ...]:
    """What --check-tasks says; not given: the default check tasks when the fitness tasks are the defaults and
    the run is re-scored (the check tasks' verdict says whether the winner transfers beyond its tasks)."""
    from prunevo.fitness.task_spec import DEFAULT_CHECK_TASKS, DEFAULT_TASKS

    given = getattr(args, "check_tasks", None)
    if given is not None:
        return () if [t.lower() for t in given] == ["none"] else tuple(given)
    defaults = tuple(args.tasks) == DEFAULT_TASKS and getattr(args, "rescore_seeds", 3) > 0
    return DEFAULT_CHECK_TASKS if defaults else ()


def _ladder(text: str) -> tuple[float, ...]:
    from prunevo.fitness.ladder import parse_ladder

    ladder = parse_ladder(text)
    return ladder.keep if ladder else ()


def _fitness_text(value: float | None, width: int = 8) -> str:
    return f"{value:{width}.4f}" if value is not None else f"{'n/a':>{width}}"


def _print_entries(title: str, entries, best=None, limit: int | None = None) -> None:
    """Hall-of-fame rows; with ``best`` (the best classic row) a column of the gap to it."""
    print(title)
    gap_head = f"  {'vs best':>8}" if best is not None else ""
    print(f"  {'#':>2}  {'fitness':>8}{gap_head}  {'size':>4}  {'gen':>3}  formula (simplified)")
    for i, e in enumerate(entries[:limit], 1):
        gap = f"  {e.fitness - best.fitness:+8.4f}" if best is not None else ""
        same = f"  (+{len(e.equivalents)} selecting the same channels)" if e.equivalents else ""
        print(f"  {i:>2}  {e.fitness:8.4f}{gap}  {e.complexity:>4}  {e.generation:>3}  {e.formula.simplified.text}{same}")


def _baseline_note(row) -> str:
    if row.reason:
        return f"  (invalid: {row.reason})"
    if row.not_applicable:
        where = "; ".join(f"{task}: {why}" for task, why in row.not_applicable.items())
        return f"  (n/a: {where})" if row.fitness is None else f"  (n/a on {where}; fitness over the other tasks)"
    return f"  ± {row.fitness_std:.4f} over seeds" if row.fitness_std else ""


def _best_classic_text(best) -> str:
    return (f"best classic: {best.name} {best.fitness:.4f} (best of the classic and Torch-Pruning criteria "
            f"scored on every task)" if best is not None else "best classic: none applies to every task")


def _print_baselines(rows) -> None:
    """Baselines best first; criteria that are n/a somewhere or invalid come after the comparable ones."""
    from prunevo.fitness.scoring import best_classic

    print("baselines (same tasks, same budget); " + _best_classic_text(best_classic(rows)))
    order = sorted(rows, key=lambda r: (not r.comparable, r.fitness is None, -(r.fitness or 0.0)))
    for row in order:
        print(f"    {_fitness_text(row.fitness)}  {row.name}{_baseline_note(row)}")


def _print_rescored(run) -> None:
    """The re-scoring: hall of fame and baselines, mean ± std over fresh seeds on held-out data (and on the
    check tasks), best first; then the winner against the best classic, paired by seed, with 95% intervals."""
    from prunevo.fitness.rescore import verdicts
    from prunevo.primitives import Formula
    from prunevo.pruning.criteria import RANDOM

    rows = run.rescored
    if not rows:
        return
    check = rows[0].check is not None
    seeds = len(next((r.fitness.values for r in rows if r.fitness.values), []))
    print(f"re-scored on held-out data, {seeds or '?'} seeds (each its own calibration batch, BatchNorm "
          f"re-estimation and fine-tune; mean ± std over seeds)"
          + ("; check tasks: " + ", ".join(run.config.check_tasks) if check else ""))
    head = f"    {'held-out fitness':>17}" + (f"  {'check tasks':>17}" if check else "")
    print(head + "  criterion")
    order = sorted(rows, key=lambda r: (not r.comparable, -(r.fitness.mean or 0.0)))
    for r in order:
        mark = "*" if r.kind == "formula" else " "
        note = f"  ({r.reason})" if r.reason else (f"  (n/a on {', '.join(r.not_applicable)})" if r.not_applicable
                                                    else "")
        cell = f"{r.fitness.text():>17}" + (f"  {r.check.text():>17}" if check else "")
        # hall-of-fame rows as the hall of fame prints them (simplified)
        name = Formula.parse(r.name).simplified.text if r.kind == "formula" else r.name
        print(f"  {mark} {cell}  {name}{note}")
    winner, classic = run.best, run.best_rescored_classic
    random = next((r for r in rows if r.name == RANDOM), None)
    won = next(r for r in rows if r.kind == "formula" and r.name == winner.text)
    parts = [f"best after re-scoring: {winner.formula.simplified.text} {won.fitness.text()}"]
    if classic is not None:
        parts.append(f"vs best classic {classic.name} {classic.fitness.text()} "
                     f"({won.fitness.mean - classic.fitness.mean:+.4f})")
    if random is not None and random.fitness.mean is not None:
        parts.append(f"vs random {won.fitness.mean - random.fitness.mean:+.4f}")
    print("; ".join(parts) + "   (* = hall of fame)")
    print(f"verdict ({run.config.regime}; paired by seed, 95% intervals):")
    for line in verdicts(rows, winner.text):
        print(f"  {line}")


def _with_preset(args):
    """The preset's values for every evolve option not typed on the command line (typed ones win, whatever
    their value, also one equal to the parser's default)."""
    from prunevo.evolve.presets import preset_defaults

    values = dict(vars(args))
    for key, value in preset_defaults(args.preset, args.data_root).items():
        if key not in args.typed:
            values[key] = value
    return argparse.Namespace(**values)


# evolve options -> EvolutionConfig fields they set (options that set no field: run_dir, resume, preset, progress)
_EVOLVE_FIELDS = {
    "tasks": "tasks", "task_weights": "task_weights", "prune_ratio": "overrides", "allocation": "overrides",
    "group_reduction": "overrides", "finetune_epochs": "overrides", "population": "population",
    "generations": "generations", "seed": "seed", "n_jobs": "n_jobs", "max_height": "max_height",
    "elitism": "elitism", "hall_of_fame": "hall_of_fame_size", "no_seed_classics": "seed_classics",
    "data_root": "data_root", "cache_dir": "cache_dir", "redraw_tries": "redraw_tries",
    "rescore_seeds": "rescore_seeds", "check_tasks": "check_tasks", "ladder": "ladder",
    "ladder_subset": "ladder_subset", "ladder_recal": "ladder_recal", "batching": "batching", "stack": "stack",
    "device": "device", "backend": "backend", "address": "address",
}


def _resumed_config(args):
    """The saved run's config with what the command line changes: options that may change on resume are
    applied (and said), any other typed option must agree with the run's value."""
    from prunevo.evolve.config import RESUMABLE, EvolutionConfig
    from prunevo.evolve.run import saved_config

    saved = saved_config(Path(args.run_dir))
    typed = _config(args)
    flags = _flags(_parser(), "evolve")
    changes, conflicts = {}, []
    for dest in sorted(args.typed & set(_EVOLVE_FIELDS)):
        name = _EVOLVE_FIELDS[dest]
        mine, theirs = getattr(typed, name), getattr(saved, name)
        if mine == theirs:
            continue
        if name in RESUMABLE:
            changes[name] = mine
        else:
            conflicts.append(f"{flags[dest]} ({_shown(mine)}; the run has {_shown(theirs)})")
    if conflicts:
        raise PrunevoError(f"--resume continues {args.run_dir} with its own config, and the command line "
                           f"contradicts it: {'; '.join(conflicts)}; allowed on resume: "
                           f"{', '.join(flags[d] for d in _EVOLVE_FIELDS if _EVOLVE_FIELDS[d] in RESUMABLE)}")
    for name, value in changes.items():
        print(f"resume: {name} {_shown(getattr(saved, name))} -> {_shown(value)}")
    return EvolutionConfig.from_json({**saved.to_json(), **{k: v for k, v in changes.items()}})


def _shown(value) -> str:
    return " ".join(value) if isinstance(value, tuple) and all(isinstance(v, str) for v in value) else str(value)


def cmd_evolve(args) -> int:
    from prunevo.evolve.run import evolve

    if args.preset:
        args = _with_preset(args)
    config = _resumed_config(args) if args.resume else _config(args)
    result = evolve(config, args.run_dir, resume=args.resume, progress=not args.no_progress)
    _print_entries(f"hall of fame ({result.run_dir}; regime {result.config.regime})", result.hall_of_fame,
                   result.best_classic)
    _print_baselines(result.baseline_rows)
    _print_rescored(result)
    return 0


def cmd_show(args) -> int:
    from prunevo.evolve.run import load_run

    run = load_run(args.run)
    if args.rescore:
        run = _rescore(run, args)
    last = run.log[-1]
    best = run.best_classic
    print(f"run {run.run_dir}: tasks {', '.join(run.config.tasks)}; regime {run.config.regime}; generation "
          f"{last['generation']} of {run.config.generations}; population {run.config.population}; seed {run.config.seed}")
    _print_entries("hall of fame", run.hall_of_fame, best, args.top)
    _print_entries("Pareto front (fitness vs size)", run.pareto, best)
    _print_baselines(run.baseline_rows)
    _print_rescored(run)
    return 0


def _rescore(run, args):
    from dataclasses import replace

    from prunevo.evolve.hall_of_fame import HallOfFame
    from prunevo.evolve.rundir import RunLock
    from prunevo.evolve.run import load_run, prepare_tasks, rescore_run

    config = replace(run.config, data_root=args.data_root or run.config.data_root,
                     n_jobs=args.n_jobs or run.config.n_jobs)
    seeds = args.rescore_seeds or run.config.rescore_seeds or 3
    if not 1 <= seeds <= 16:
        raise PrunevoError(f"--rescore-seeds must be in [1, 16], got {seeds}")
    hof = HallOfFame(run.config.hall_of_fame_size, run.hall_of_fame)
    lock = RunLock(run.run_dir).acquire()  # the re-scoring rewrites the run's files
    try:
        rescore_run(run.run_dir, config, hof, prepare_tasks(config), prepare_tasks(config, check=True), seeds,
                    progress=True)
    finally:
        lock.release()
    return load_run(run.run_dir)


def cmd_export(args) -> int:
    from prunevo.evolve.run import load_run
    from prunevo.primitives.export import export_formula
    from prunevo.utils import atomic_write_text

    run = load_run(args.run)
    if args.rank is not None and not 1 <= args.rank <= len(run.hall_of_fame):
        raise PrunevoError(f"--rank {args.rank} is out of range; the hall of fame has {len(run.hall_of_fame)} entries")
    entry = run.best if args.rank is None else run.hall_of_fame[args.rank - 1]
    rank = run.hall_of_fame.index(entry) + 1
    formula = entry.formula.simplified if args.simplified else entry.formula
    extra = {"fitness": entry.fitness, "accuracy": entry.accuracy, "tasks": list(run.config.tasks),
             "run": str(run.run_dir), "rank": rank}
    if entry.rescored:
        extra["rescored"] = entry.rescored
    text = export_formula(formula, args.format, extra)
    if args.output:
        atomic_write_text(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_score(args) -> int:
    from prunevo.evolve.run import prepare_tasks
    from prunevo.fitness.evaluator import Evaluator
    from prunevo.fitness.scoring import best_classic, score_with
    from prunevo.pruning.criteria import as_criterion

    criteria = [as_criterion(f) for f in args.formulas]
    config = _config(argparse.Namespace(**vars(args), population=2, generations=0, max_height=8, elitism=0,
                                        hall_of_fame=1, no_seed_classics=False, check_tasks=["none"]))
    prepared = prepare_tasks(config)
    with Evaluator(prepared, **config.evaluator_options(ladder=False)) as evaluator:
        rows = score_with(evaluator, criteria, baselines=not args.no_baselines)
    best = best_classic(rows)
    names = [t.task.name for t in prepared]
    print(f"{'criterion':<40} {'fitness':>8} {'vs best':>8}  " + "  ".join(f"{n:>14}" for n in names))
    for row in rows:
        accs = "  ".join(f"{'n/a':>14}" if n in row.not_applicable else f"{row.accuracy.get(n, float('nan')):14.4f}"
                         for n in names)
        gap = f"{row.fitness - best.fitness:+8.4f}" if best is not None and row.comparable else " " * 8
        print(f"{row.name[:40]:<40} {_fitness_text(row.fitness)} {gap}  {accs}{_baseline_note(row)}")
    print("base accuracy".ljust(40), " " * 17, "  ".join(f"{t.base_val_accuracy:14.4f}" for t in prepared))
    if best is not None or not args.no_baselines:  # with --no-baselines, only the named classics given compete
        print(_best_classic_text(best))
    return 0


def cmd_tasks(args) -> int:
    from prunevo.fitness.task_spec import DEFAULT_TASKS, OPTIONS, available_tasks, parse_task, split_spec
    from prunevo.training.regimes import REGIME_HELP

    if args.specs:  # describe the given tasks (their options checked)
        for spec in args.specs:
            print(f"{spec}\n    {parse_task(spec).describe()}")
        return 0
    print("Tasks are MODEL@DATASET[:key=value,...]: any model and dataset that 'prunevo apply' accepts.")
    print("regimes (set by epochs=; a formula evolved in one regime is evidence about that regime):")
    for name, text in REGIME_HELP.items():
        print(f"  {name:<16} {text}")
    print("options:")
    for key, (_, text) in OPTIONS.items():
        print(f"  {key:<11} {text}")
    print("short names:")
    for name in available_tasks():
        model, dataset, _ = split_spec(name)
        mark = " "
        print(f"{mark} {name:<22} = {model + '@' + dataset:<27} {parse_task(name).describe().split(': ', 1)[1]}")
    print(f"default tasks of 'prunevo evolve': {' '.join(DEFAULT_TASKS)}")
    print("other datasets (cifar10, imagefolder:PATH, fakedata...) default to "
          "32 px, ratio 0.5, 15 pretraining epochs")
    return 0


def cmd_criteria(args) -> int:
    import textwrap

    from prunevo.primitives.classic import CLASSIC_NOTES, CLASSIC_TEXT
    from prunevo.pruning.tp_criteria import TP_CRITERIA

    def wrapped(label: str, text: str) -> None:
        print(textwrap.fill(text, 110, initial_indent=f"      {label}", subsequent_indent=" " * (6 + len(label))))

    print("classic criteria (formulas of the grammar; they seed every evolution):")
    for name, text in CLASSIC_TEXT.items():
        print(textwrap.fill(text, 110, initial_indent=f"  {name:<11} ", subsequent_indent=" " * 14))
        wrapped("", CLASSIC_NOTES[name])
    print("Torch-Pruning importances (scored by Torch-Pruning's own classes; prunevo allocates, selects and "
          "fine-tunes as for every criterion):")
    for spec in TP_CRITERIA.values():
        normalizer = "LAMP" if spec.normalizer == "lamp" else "each group divided by its mean"
        print(f"  {spec.name:<11} {spec.cls}; group reduction mean (or --group-reduction); {normalizer}")
        if spec.formula:
            wrapped("grammar: ", f"{spec.formula} ranks channels as the class does on {spec.exact_on}")
        else:
            wrapped("grammar: ", "cannot express it")
        wrapped("missing: ", spec.missing)
    print(f"  {'random':<11} uniform random scores: the baseline every criterion must beat")
    return 0


COMMANDS = {"criteria": cmd_criteria, "evolve": cmd_evolve, "show": cmd_show, "export": cmd_export, "score": cmd_score, "tasks": cmd_tasks,
            **TRANSFER_COMMANDS}


def _flags(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """Parameter name -> the long option that sets it, for one subcommand (library errors name parameters)."""
    sub = _subparser(parser, command)
    return {a.dest: max(a.option_strings, key=len) for a in sub._actions if a.option_strings}


def _typed(argv: list[str] | None) -> set[str]:
    """The destinations of the options typed on the command line (argparse cannot tell a default from a typed
    value equal to it): the same arguments parsed again with every default suppressed."""
    probe = _parser()
    subparsers = _subparser(probe, None).values()
    for action in [*probe._actions, *(a for sub in subparsers for a in sub._actions)]:
        if action.dest != "command":
            action.default = argparse.SUPPRESS
    return set(vars(probe.parse_args(argv))) - {"command"}


def _subparser(parser: argparse.ArgumentParser, command: str | None):
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    return choices if command is None else choices[command]


def _one_line(exc: PrunevoError, flags: dict[str, str] | None = None) -> str:
    """The error's own message, with the parameters it names as the flags that set them.  An error raised in a
    DataLoader worker comes back with the worker's traceback in its text ("Caught DataError in DataLoader
    worker process 0. Original Traceback ..."): its last line is the message."""
    text = exc.cli_message(flags or {})
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and "Original Traceback" in text:
        last = lines[-1]
        return last.split(": ", 1)[1] if last.split(": ", 1)[0].endswith("Error") else last
    return " ".join(line.strip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.typed = _typed(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return COMMANDS[args.command](args)
    except PrunevoError as exc:
        print(f"prunevo: error: {_one_line(exc, _flags(parser, args.command))}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # output piped into head & co.: stop quietly, as command-line tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141
    except KeyboardInterrupt:
        print("prunevo: interrupted; an evolution continues with 'prunevo evolve --resume --run-dir DIR'",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
