"""Command line: prunevo evolve | show | export | score | tasks | criteria | train | apply | compare | benchmark.

Bad input ends with one line, ``prunevo: error: ...``, and exit code 2; never a traceback.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from prunevo.cli_options import EXIT_USAGE, ConfigOptions, Parser, config_values, plain_option
from prunevo.cli_transfer import TRANSFER_COMMANDS, TRANSFER_CONFIGS, add_reconstruction, add_transfer_commands
from prunevo.configs import build
from prunevo.errors import PrunevoError
from prunevo.evolve.report import (
    baseline_note,
    best_classic_text,
    fitness_text,
    print_baselines,
    print_data_roles,
    print_entries,
    print_rescored,
    shown_name,
)
from prunevo.fitness.backends import BACKENDS
from prunevo.fitness.execution import BATCHING
from prunevo.pruning.allocation import ALLOCATIONS, SearchSpec
from prunevo.pruning.criteria import criterion_names
from prunevo.pruning.ranking import REDUCTIONS


def _add_fitness_options(o: ConfigOptions) -> None:
    """Tasks, seed, data and execution: the ``FitnessConfig`` fields that evolve and score share."""
    from prunevo.fitness.task_spec import DISCOVERY_OPTIONS, TASK_SYNTAX_HELP, dataset_defaults

    o.field("data", "--tasks", path="tasks", nargs="+", metavar="TASK",
            help="fitness tasks, " + TASK_SYNTAX_HELP + "; fitness is the weighted geometric mean over the tasks")
    o.field("data", "--task-weights", path="task_weights", nargs="+", type=float, metavar="W",
            help="weights of the tasks in the geometric mean, one per task; they replace the tasks' weight= options",
            default="those, else equal")
    o.field("data", "--data-root", path="data_root",
            help="folder with MNIST/ and FashionMNIST/ in torchvision's layout (needed by tasks on mnist, "
                 "fashion-mnist, cifar10...)")
    o.field("data", "--cache-dir", path="cache_dir", help="where base networks and extracted data are cached",
            default="$PRUNEVO_CACHE or ~/.cache/prunevo")
    o.field("target", "--prune-ratio", path="overrides.prune_ratio", type=float,
            help="fraction of channels removed in every task without its own macs= or ratio=",
            default=f"the task's, {dataset_defaults('digits')['prune'].ratio:g} on digits and MNISTs")
    o.field("strategy", "--allocation", path="overrides.allocation", choices=ALLOCATIONS,
            help="uniform = remove the same fraction in every layer; global = rank all channels together with a "
                 f"per-layer cap; random-search = per task, sample {SearchSpec().candidates} per-layer "
                 "configurations at the uniform allocation's MACs, the criterion picks channels within layers, and "
                 "the configuration best after BatchNorm recalibration is fine-tuned (slower fitness)",
            default=f"the task's: uniform, or {DISCOVERY_OPTIONS['allocation']} for --model")
    o.field("strategy", "--baseline-allocations", path="baseline_allocations", nargs="+", metavar="A",
            help="every baseline is also scored under these allocations (uniform, global, random-search) besides "
                 "the tasks' own, so that the best classic is the best (criterion, allocation) pair; none = the "
                 "tasks' own only")
    o.field("criterion", "--group-reduction", path="overrides.group_reduction", choices=REDUCTIONS,
            help="how scores of residual-coupled layers combine into one group score", default="the task's, mean")
    o.field("finetune", "--finetune-epochs", path="overrides.finetune_epochs", type=float,
            help="epochs of fine-tuning after pruning; 0 = BatchNorm recalibration only", default="the task's")
    add_reconstruction(o, prefix="overrides.")
    o.field("run", "--seed", path="seed", type=int, help="seed of the run: same seed, same result")
    o.field("execution", "--n-jobs", path="execution.n_jobs", type=int,
            help="parallel fitness workers: local processes, or Dask/Ray workers used")
    o.field("execution", "--batching", path="execution.batching", choices=BATCHING,
            help="how a worker scores a task's candidates: loop = one pruned skeleton per shape, each candidate's "
                 "weights gathered into it; fused = --stack candidates in one vmapped pass (grouped convolutions, "
                 "for GPUs; equal to loop within float tolerance); off = Torch-Pruning prunes each candidate; "
                 "auto = fused on CUDA, loop on the CPU")
    o.field("execution", "--stack", path="execution.stack", type=int,
            help="candidates per fused pass, padded to this size")
    o.field("execution", "--device", path="execution.device",
            help="where fitness jobs run: auto (CUDA when present), cpu, cuda, cuda:N")
    o.field("execution", "--backend", path="execution.backend", choices=BACKENDS,
            help="where workers run: loky = local processes; dask = a Dask cluster (--address of a scheduler, e.g. "
                 "dask-jobqueue on SLURM; without it a local one); ray = a Ray cluster (--address auto on a Ray "
                 "node; without it a local one); fitness never depends on it (dask and ray need prunevo[dask] / "
                 "prunevo[ray])")
    o.field("execution", "--address", path="execution.address",
            help="address of a running Dask scheduler (tcp://host:8786) or Ray cluster (auto)",
            default="start a local one")


# evolve's options that build its one task from the user's network (``task_spec.task_for``), by destination
NETWORK_OPTIONS = {"model": "--model", "checkpoint": "--checkpoint", "dataset": "--dataset",
                   "image_size": "--image-size", "stem": "--stem", "target_macs": "--target-macs",
                   "channel_ratio": "--channel-ratio", "no_proxy": "--no-proxy"}


def _add_network_options(o: ConfigOptions) -> None:
    """``prunevo evolve --model M --checkpoint C --dataset D``: a search on the user's own network, its task
    built by ``task_spec.task_for`` (apply's setup options, instead of --tasks)."""
    from prunevo.cli_transfer import DATASET_HELP, MODEL_HELP
    from prunevo.fitness.task_spec import DISCOVERY_OPTIONS, LARGE_INPUT_PROXY_TEXT, LARGE_INPUT_PX
    from prunevo.pruning.target import DEFAULT_TARGET_MACS
    from prunevo.zoo.models import SMALL_INPUT_MAX, STEMS

    defaults = ",".join(f"{k}={v}" for k, v in DISCOVERY_OPTIONS.items())
    o.plain("data", "--model", help=f"search on your own network instead of --tasks: {MODEL_HELP}; its one task "
                                   f"is MODEL@DATASET:checkpoint=...,{defaults} (one-shot; see 'prunevo tasks')")
    o.plain("data", "--checkpoint", help="with --model: its weights (a checkpoint from 'prunevo train' or a "
                                        "state_dict file, loaded with weights_only=True); nothing is trained, and "
                                        "fitness never reads images these weights may have trained on")
    o.plain("data", "--dataset", help=f"with --model: {DATASET_HELP}", default=None)
    o.plain("data", "--image-size", type=int, help="with --model: image size in pixels (default: the checkpoint's, "
                                                   "else the dataset's)")
    o.plain("data", "--stem", choices=STEMS, help=f"with --model: torchvision models' stem; auto = cifar at <= "
                                                 f"{SMALL_INPUT_MAX} px (default: the checkpoint's, else auto)")
    target = o.group("target").add_mutually_exclusive_group()
    target.add_argument("--target-macs", type=float, default=None,
                        help=f"with --model: share of the MACs kept (default: {DEFAULT_TARGET_MACS:g})")
    target.add_argument("--channel-ratio", type=float, default=None,
                        help="with --model: share of the channels removed instead")
    o.plain("data", "--no-proxy", action="store_true", default=None,
            help=f"with --model: fitness reads the whole task even for inputs of {LARGE_INPUT_PX} px or more, where "
                 f"it reads a cheaper proxy by default ({LARGE_INPUT_PROXY_TEXT}; the verdict is always at full size)")


def build_parser() -> argparse.ArgumentParser:
    """The ``prunevo`` command line: one subcommand per pipeline step, options in argument groups, and each
    default read from the config dataclass whose field the option sets."""
    from prunevo.evolve.presets import DEFAULT_DATA_ROOT, PRESETS
    from prunevo.fitness.config import FitnessConfig
    from prunevo.fitness.task_spec import DEFAULT_CHECK_TASKS
    from prunevo.fitness.tasks import RECAL_BATCHES
    from prunevo.primitives.export import FORMATS
    from prunevo.runs.config import EvolutionConfig

    parser = Parser(prog="prunevo", description="Discover channel-pruning criteria by "
                                     "genetic programming, and score them against the classic ones.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log base-net training and other details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("evolve", help="run (or resume) an evolution", description="Evolve pruning formulas: on "
                       "your own network with --model/--checkpoint/--dataset (one-shot, global allocation, a verdict "
                       "on held-out images at the end), or on --tasks. "
                       "The run directory gets config, checkpoint, log.csv, hall_of_fame.json, pareto.json, "
                       "baselines.json (every classic criterion, Torch-Pruning's importances and random, on the same "
                       "tasks and budget) and fitness.png, all updated every generation.")
    o = ConfigOptions(p, EvolutionConfig)
    o.plain("run", "--preset", choices=list(PRESETS),
            help=f"named settings; options given on the command line win; data from --data-root (default "
                 f"{DEFAULT_DATA_ROOT}, with MNIST/, FashionMNIST/ and imagenette2/). "
                 + ". ".join(f"{name}: {preset.describe()}" for name, preset in PRESETS.items()))
    _add_fitness_options(o)
    _add_network_options(o)
    o.field("data", "--check-tasks", path="check_tasks", nargs="+", metavar="TASK",
            help="tasks never used for fitness (same syntax as --tasks), scored at the end like the re-scoring, "
                 "with a paired verdict against the best classic on each; 'none' for none",
            default=f"with the default --tasks and re-scoring on, {' '.join(DEFAULT_CHECK_TASKS)}: a network "
                    f"family no default task uses")
    o.field("evolution", "--population", path="population", type=int, help="individuals per generation")
    o.field("evolution", "--generations", path="generations", type=int, help="generations after the initial one")
    o.field("evolution", "--max-height", path="max_height", type=int, help="tree height limit for variation")
    o.field("evolution", "--elitism", path="elitism", type=int, help="best individuals copied unchanged")
    o.field("evolution", "--hall-of-fame", path="hall_of_fame_size", type=int, help="distinct formulas kept")
    o.field("evolution", "--no-seed-classics", path="seed_classics", action="store_const", const=False,
            help="start from random trees only, not from the classic criteria", default="seeded")
    o.field("evolution", "--redraw-tries", path="redraw_tries", type=int,
            help="mutate an offspring again when it selects the same channels on every task as a candidate already "
                 "evaluated, up to this many times, so each generation explores new selections (0 = never)")
    o.field("evolution", "--node-mutation", path="node_mutation", type=float,
            help="share of mutations that swap one node for another of the same types (a norm for another norm, "
                 "an operand for another; DEAP's mutNodeReplacement); the rest regrow a subtree (0 = none)")
    o.field("racing", "--race", path="race", type=int,
            help="each generation, measure the best this-many new selections again on --race-draws - 1 fresh "
                 "calibration draws (their own BatchNorm re-estimation too) and rank them on the draws' mean less "
                 "--race-risk standard deviations; only raced formulas enter the hall of fame, so the winner is not "
                 "one lucky draw (0 = off)")
    o.field("racing", "--race-draws", path="race_draws", type=int,
            help="draws a raced formula is measured on, the first included")
    o.field("racing", "--race-risk", path="race_risk", type=float,
            help="a raced formula's fitness is the mean over its draws less this many standard deviations of them: "
                 "1 prefers a criterion whose selection holds from one calibration batch to the next (0 = the mean)")
    o.field("evolution", "--rescore-seeds", path="rescore_seeds", type=int,
            help="at the end, re-score the hall of fame, the best seed and every baseline on this many fresh seeds "
                 "(each its own calibration batch, BatchNorm re-estimation and fine-tune) and on held-out images "
                 "(the test split, or half of the validation split): the winner (the hall of fame's first, chosen "
                 "on validation) against the best classic and against the best seed (the evolution gain), paired "
                 "by seed, with 95% intervals (0 = skip)")
    o.field("ladder", "--ladder", path="ladder", metavar="SHARES",
            help="fidelity ladder: every new selection is first scored by BatchNorm-recalibrated accuracy without "
                 "fine-tuning on --ladder-subset validation images (rung 0), and only the best share climbs: 0.25 = "
                 "the best quarter gets the task's full fine-tune; 0.5,0.5 = halves over three rungs (the middle "
                 "one fine-tunes half as long); only full measurements enter the hall of fame; off = none",
            default="off")
    o.field("ladder", "--ladder-subset", path="ladder_subset", type=int,
            help="validation images scored at rung 0 of the ladder, stratified")
    o.field("ladder", "--ladder-recal", path="ladder_recal", type=int,
            help=f"batches of 256 training images that recalibrate BatchNorm at rung 0 ({RECAL_BATCHES} is the "
                 "full measurement's; 2 ranked as well in docs/BENCHMARKS.md's fidelity table at a third less cost)")
    o.plain("run", "--run-dir", default="runs/latest", help="run directory")
    o.plain("run", "--resume", action="store_true",
            help="continue the run in --run-dir from its last checkpoint (--generations may extend it)")
    o.plain("output", "--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("show", help="print a run's hall of fame, Pareto front, baselines and re-scoring")
    p.add_argument("run", help="run directory")
    plain_option(p, "--top", type=int, default=10, help="hall-of-fame rows to print")
    p.add_argument("--rescore", action="store_true",
                   help="re-score the hall of fame and every baseline now (fresh seeds, held-out data, the run's "
                        "check tasks), save it in the run directory, and print it")
    p.add_argument("--rescore-seeds", type=int, help="seeds for --rescore (default: the run's --rescore-seeds, or "
                                                     f"{EvolutionConfig.rescore_seeds})")
    p.add_argument("--n-jobs", type=int, default=None, help="parallel fine-tunes for --rescore (default: the run's)")
    p.add_argument("--data-root", help="data root for --rescore when the run's has moved")

    p = sub.add_parser("export", help="export a formula of a run")
    p.add_argument("run", help="run directory")
    plain_option(p, "--format", choices=FORMATS, default=FORMATS[0], help="output format")
    p.add_argument("--rank", type=int, default=None,
                   help="hall-of-fame rank to export (default 1: the run's winner, the best on validation)")
    p.add_argument("--simplified", action="store_true", help="export the SymPy-simplified formula")
    p.add_argument("-o", "--output", help="write to this file (atomically) instead of standard output")

    p = sub.add_parser("score", help="score formulas beside the classic criteria and random",
                       description="Prune each task's base net with each formula, fine-tune, and print the "
                                   "fitness next to every classic criterion, every Torch-Pruning importance and "
                                   "random, with the gap to the best of the classic and Torch-Pruning criteria. "
                                   "A criterion that needs what a task's net lacks (BatchNorm, a gradient) shows "
                                   "n/a there and is left out of its geometric mean and of the best classic.")
    p.add_argument("formulas", nargs="+", metavar="FORMULA",
                   help="formula text ('l1(W) / (std(F) + 0.05)'), a named criterion (" + criterion_names()
                        + "; see 'prunevo criteria'), or a .json/.txt file")
    o = ConfigOptions(p, FitnessConfig)
    _add_fitness_options(o)
    o.plain("criterion", "--no-baselines", action="store_true", help="score only the given formulas")
    o.plain("output", "--no-progress", action="store_true", help="no progress bar while base nets train")

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
    """EvolutionConfig from the typed values over the preset's (``--preset``) over the dataclass defaults;
    ``--model`` and the other network options build its one task."""
    from prunevo.evolve.presets import preset_defaults
    from prunevo.runs.config import EvolutionConfig

    typed = _none_words(config_values(args, EvolutionConfig))
    typed.update(_network_task(args, typed))
    values = {**(preset_defaults(args.preset, args.data_root) if args.preset else {}), **typed}
    if isinstance(values.get("ladder"), str):  # typed, or a preset's text
        values["ladder"] = _ladder(values["ladder"])
    return build(EvolutionConfig, values)


def _fitness_config(args):
    from prunevo.fitness.config import FitnessConfig

    return build(FitnessConfig, _none_words(config_values(args, FitnessConfig)))


def _none_words(values: dict) -> dict:
    """Lists given as the single word 'none' (--check-tasks none, --baseline-allocations none) are empty."""
    return {k: () if isinstance(v, (list, tuple)) and [str(x).lower() for x in v] == ["none"] else v
            for k, v in values.items()}


def _network_task(args, values: dict) -> dict:
    """``{"tasks": (spec,)}`` for ``evolve --model ...`` (the typed --allocation goes into the spec, where it wins
    over the discovery default), else nothing.  Raises PrunevoError for network options without --model or
    beside --tasks."""
    from prunevo.fitness.task_spec import task_for

    typed = [flag for dest, flag in NETWORK_OPTIONS.items() if getattr(args, dest, None) is not None]
    if args.model is None:
        if typed:
            raise PrunevoError(f"{', '.join(typed)} need{'s' if len(typed) == 1 else ''} --model: the network options "
                               f"describe your own network to search on (or give --tasks)")
        return {}
    if "tasks" in values:
        raise PrunevoError("give --tasks or --model (a search on your own network), not both")
    spec = task_for(args.model, args.dataset, checkpoint=args.checkpoint, image_size=args.image_size, stem=args.stem,
                    target_macs=args.target_macs, channel_ratio=args.channel_ratio,
                    allocation=values.pop("overrides.allocation", None), proxy=not args.no_proxy)
    return {"tasks": (spec,)}


def _ladder(text: str) -> tuple[float, ...]:
    """--ladder's text as the config's shares.  Raises PrunevoError for a bad one."""
    from prunevo.fitness.ladder import parse_ladder

    ladder = parse_ladder(text)
    return ladder.keep if ladder else ()


def _resumed_config(args, parser: argparse.ArgumentParser):
    """The saved run's config with what the command line changes (``runs.config.resume_differences`` on the
    options typed): changes are applied and said, conflicts refused, both named by their flags."""
    from prunevo.runs.config import RESUMABLE, EvolutionConfig, resume_differences
    from prunevo.runs.result import saved_config

    saved = saved_config(Path(args.run_dir))
    flags = {**_flags(parser, "evolve"), "tasks": "--tasks" if args.model is None else "--model"}
    typed = set(config_values(args, EvolutionConfig)) | ({"tasks"} if args.model is not None else set())
    diff = resume_differences(saved, _config(args), typed)
    if diff.conflicts:
        conflicts = [f"{flags[path]} ({_shown(new)}; the run has {_shown(old)})"
                     for path, (old, new) in diff.conflicts.items()]
        raise PrunevoError(f"--resume continues {args.run_dir} with its own config, and the command line "
                           f"contradicts it: {'; '.join(conflicts)}; allowed on resume: "
                           f"{', '.join(flags[path] for path in RESUMABLE)}")
    for path, (old, new) in diff.changes.items():
        print(f"resume: {flags[path]} {_shown(old)} -> {_shown(new)}")
    return build(saved, {path: new for path, (_, new) in diff.changes.items()})


def _shown(value) -> str:
    return " ".join(value) if isinstance(value, tuple) and all(isinstance(v, str) for v in value) else str(value)


def cmd_evolve(args) -> int:
    from prunevo.evolve.run import evolve
    from prunevo.fitness.task_spec import proxy_note

    config = _resumed_config(args, build_parser()) if args.resume else _config(args)
    note = proxy_note(config.tasks[0]) if args.model is not None and not args.resume else None
    if note:
        print(note)
    result = evolve(config, args.run_dir, resume=args.resume, progress=not args.no_progress)
    print_data_roles(result.data_roles)
    print_entries(f"hall of fame ({result.run_dir}; regime {result.config.regime}; {result.config.allocation} "
                   f"allocation)", result.hall_of_fame, result.best_classic)
    print_baselines(result.baseline_rows)
    print_rescored(result)
    return 0


def cmd_show(args) -> int:
    from prunevo.runs.result import load_run

    run = load_run(args.run)
    if args.rescore:
        run = _rescore(run, args)
    last = run.log[-1]
    best = run.best_classic
    print(f"run {run.run_dir}: tasks {', '.join(run.config.tasks)}; regime {run.config.regime}; "
          f"{run.config.allocation} allocation; generation "
          f"{last['generation']} of {run.config.generations}; population {run.config.population}; "
          f"seed {run.config.seed}")
    print_data_roles(run.data_roles)
    print_entries("hall of fame", run.hall_of_fame, best, args.top)
    print_entries("Pareto front (fitness vs size)", run.pareto, best)
    print_baselines(run.baseline_rows)
    print_rescored(run)
    return 0


def _rescore(run, args):
    from prunevo.evolve.run import rescore_saved
    from prunevo.runs.config import EvolutionConfig
    from prunevo.runs.result import load_run
    from prunevo.runs.rundir import RunLock

    seeds = args.rescore_seeds or run.config.rescore_seeds or EvolutionConfig.rescore_seeds
    changes = {"data_root": args.data_root, "execution.n_jobs": args.n_jobs, "rescore_seeds": seeds}
    config = build(run.config, {k: v for k, v in changes.items() if v is not None})  # range-checked there
    lock = RunLock(run.run_dir).acquire()  # the re-scoring rewrites the run's files
    try:
        rescore_saved(run.run_dir, config, progress=True)
    finally:
        lock.release()
    return load_run(run.run_dir)


def cmd_export(args) -> int:
    from prunevo.primitives.export import export_formula
    from prunevo.runs.result import load_run
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
    from prunevo.fitness.scoring import best_classic, score_criteria
    from prunevo.pruning.criteria import as_criterion

    criteria = [as_criterion(f) for f in args.formulas]  # bad text fails here, before any task is prepared
    config = _fitness_config(args)
    prepared = config.prepare(progress=not args.no_progress)
    rows = score_criteria(criteria, prepared, execution=config.execution, seed=config.seed,
                          baselines=not args.no_baselines, allocations=config.baseline_allocations)
    best = best_classic(rows)
    names = [t.task.name for t in prepared]
    print(f"regime: {config.regime} (a criterion scored in one regime is evidence about that one)")
    print(f"{'criterion':<40} {'fitness':>8} {'vs best':>8}  " + "  ".join(f"{n:>14}" for n in names))
    for row in rows:
        accs = "  ".join(f"{'n/a':>14}" if n in row.not_applicable else f"{row.accuracy.get(n, float('nan')):14.4f}"
                         for n in names)
        gap = f"{row.fitness - best.fitness:+8.4f}" if best is not None and row.comparable else " " * 8
        print(f"{shown_name(row, rows)[:40]:<40} {fitness_text(row.fitness)} {gap}  {accs}{baseline_note(row)}")
    print("base accuracy".ljust(40), " " * 17, "  ".join(f"{t.base_val_accuracy:14.4f}" for t in prepared))
    if best is not None or not args.no_baselines:  # with --no-baselines, only the named classics given compete
        print(best_classic_text(best))
    return 0


def cmd_tasks(args) -> int:
    from prunevo.fitness.task_spec import (
        BUDGET_DEFAULTS,
        DEFAULT_TASKS,
        DISCOVERY_OPTIONS,
        LARGE_INPUT_PROXY,
        LARGE_INPUT_PX,
        OPTIONS,
        available_tasks,
        parse_task,
        split_spec,
    )
    from prunevo.pruning.target import DEFAULT_TARGET_MACS
    from prunevo.training.regimes import REGIME_HELP
    from prunevo.zoo.registry import dataset_specs

    if args.specs:  # describe the given tasks (their options checked)
        for spec in args.specs:
            print(f"{spec}\n    {parse_task(spec).describe()}")
        return 0
    print("Tasks are MODEL@DATASET[:key=value,...]: any model and dataset that 'prunevo apply' accepts.")
    print("regimes (set by epochs= and reconstruct=; a formula evolved in one regime is evidence about that "
          "regime):")
    for name, text in REGIME_HELP.items():
        print(f"  {name:<26} {text}")
    print("options:")
    for key, (_, text) in OPTIONS.items():
        print(f"  {key:<11} {text}")
    print("short names:")
    for name in available_tasks():
        model, dataset, _ = split_spec(name)
        mark = " "
        print(f"{mark} {name:<22} = {model + '@' + dataset:<27} {parse_task(name).describe().split(': ', 1)[1]}")
    print(f"default tasks of 'prunevo evolve': {' '.join(DEFAULT_TASKS)}")
    discovery = ",".join(f"{k}={v}" for k, v in DISCOVERY_OPTIONS.items())
    print(f"'prunevo evolve --model M --checkpoint C --dataset D' builds M@D:checkpoint=C,{discovery},macs="
          f"{DEFAULT_TARGET_MACS:g} (--target-macs, --channel-ratio, --allocation, --image-size, --stem change it); "
          f"on inputs of {LARGE_INPUT_PX} px or more its fitness reads a proxy, "
          f"{','.join(f'{k}={v}' for k, v in LARGE_INPUT_PROXY.items())} (--no-proxy: the whole task)")
    colour = BUDGET_DEFAULTS["colour"]
    others = ", ".join(spec.shown for spec in dataset_specs() if spec.budget == "colour")
    print(f"other datasets ({others}) default to {colour['image_size']} px, ratio "
          f"{colour['prune'].ratio:g}, {colour['pretrain'].budget.epochs:g} pretraining epochs")
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


COMMANDS = {"criteria": cmd_criteria, "evolve": cmd_evolve, "show": cmd_show, "export": cmd_export, "score": cmd_score,
            "tasks": cmd_tasks, **TRANSFER_COMMANDS}
CONFIGS = {"evolve": _config, "score": _fitness_config, **TRANSFER_CONFIGS}  # command -> its config from the args


def _flags(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """Parameter -> the long option that sets it, for one subcommand (library errors name parameters): by the
    config path (``execution.n_jobs``) and, where it is unambiguous, by the field name alone (``n_jobs``)."""
    sub = _subparser(parser, command)
    by_path = {a.dest: max(a.option_strings, key=len) for a in sub._actions if a.option_strings}
    names: dict[str, list[str]] = {}
    for path, flag in by_path.items():
        names.setdefault(path.rsplit(".", 1)[-1], []).append(flag)
    return {**{name: flags[0] for name, flags in names.items() if len(flags) == 1}, **by_path}


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


def parse_config(argv: list[str]):
    """The config a command line runs with: ``EvolutionConfig`` for evolve (a preset applied; the run's own
    config for --resume is read at run time), ``FitnessConfig`` for score, ``TrainConfig`` for train,
    ``TransferConfig`` for apply, compare (its first strategy and allocation) and benchmark.

    Raises PrunevoError for bad values, KeyError for a command without a config, SystemExit (2) for a usage
    error as argparse does."""
    args = build_parser().parse_args(argv)
    return CONFIGS[args.command](args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
