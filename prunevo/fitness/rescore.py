"""Re-scoring: fitness measured again on fresh seeds and on images evolution never saw.

Picking winners on one validation split and one seed favours the candidate that got lucky there.  Re-scoring
measures each criterion again on each task's held-out split (``TaskData.holdout``: the test split, or the
half of the validation split that fitness never reads), relative to the unpruned net on that split, with
``seeds`` independent replicates.  Replicate ``i`` draws its own class-stratified calibration batch (so the
criterion's scores, and its selection, may change), its own BatchNorm re-estimation and fine-tune seed, and
``random``'s own draw; every criterion gets the same replicate ``i``, so two criteria can be compared seed by
seed (``prunevo.verdict``).  Seeds derive from the run's seed and the word "rescore".  It reports the mean and
standard deviation over the replicates, on the fitness tasks and, separately, on check tasks that evolution
never used.  Baselines are also measured under other allocations (``allocations``: uniform, global), and a
formula can be (``variants_only``): each replicate's allocation variants share its calibration batch, so
every (criterion, allocation) pair is paired by seed with every other.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, replace

from prunevo.fitness.backends import Backend
from prunevo.fitness.evaluator import Evaluator, FitnessResult, weighted_geometric_mean
from prunevo.fitness.execution import SERIAL, Execution
from prunevo.fitness.scoring import allocation_variants, own_allocation
from prunevo.fitness.tasks import PreparedTask
from prunevo.progress import track
from prunevo.pruning.criteria import BASELINE_NAMES, RANDOM, RandomCriterion, as_baseline, as_criterion
from prunevo.training import top1
from prunevo.utils import derive_seed, load_state


@dataclass
class Score:
    """Mean and standard deviation over seeds of the weighted geometric mean of relative accuracy.

    ``values``: one per seed (replicate), in seed order; ``accuracy``: per task, the mean top-1 over seeds;
    ``seed_accuracy``: per task, the top-1 of every seed (what paired comparisons on one task read)."""

    mean: float | None
    std: float | None
    values: list[float] = field(default_factory=list)
    accuracy: dict[str, float] = field(default_factory=dict)
    seed_accuracy: dict[str, list[float]] = field(default_factory=dict)

    def text(self) -> str:
        return "n/a" if self.mean is None else f"{self.mean:.4f} ± {self.std:.4f}"


@dataclass
class RescoredRow:
    """One criterion under one allocation, re-scored.  ``kind``: ``formula`` (a hall-of-fame entry under the
    tasks' own allocation), ``baseline`` (a classic or Torch-Pruning criterion, or random, under any
    allocation), ``variant`` (a formula under another allocation than the tasks': where its gain comes from) or
    ``seed`` (an evolution's best seed, a formula of its initial population, under the tasks' allocation)."""

    name: str
    kind: str
    fitness: Score  # on the fitness tasks' held-out splits
    check: Score | None = None  # on the check tasks
    reason: str | None = None
    not_applicable: dict[str, str] = field(default_factory=dict)
    allocation: str | None = None  # None in runs from before allocation variants

    @property
    def comparable(self) -> bool:
        return self.reason is None and not self.not_applicable and self.fitness.mean is not None

    @property
    def label(self) -> str:
        """The name with its allocation: one (criterion, allocation) pair."""
        return f"{self.name} ({self.allocation})" if self.allocation else self.name

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "RescoredRow":
        check = data.get("check")
        return cls(data["name"], data["kind"], Score(**data["fitness"]), Score(**check) if check else None,
                   data.get("reason"), data.get("not_applicable") or {}, data.get("allocation"))


def holdout_tasks(prepared: list[PreparedTask], seeds: int) -> list[PreparedTask]:
    """The tasks scored on their held-out split with ``seeds`` fine-tune seeds (the calibration batch, and so
    the selection, of the fitness tasks)."""
    out = []
    for p in prepared:
        model = p.build()
        load_state(model, p.base_state)
        data = replace(p.data, val=p.data.holdout)
        out.append(replace(p, task=replace(p.task, seeds=seeds), data=data, base_val_accuracy=top1(model, data.val),
                           split="holdout"))
    return out


def replicate(held: PreparedTask, seed: int) -> PreparedTask:
    """A held-out task (see ``holdout_tasks``, one fine-tune seed) with its own calibration batch, drawn from
    ``seed``: a task of its own (its identity, so its cache keys and fine-tune seed, differ)."""
    return held.redrawn(seed, seeds=1)


def _scores(results: list[FitnessResult], tasks: list[str], weights: list[float], base: dict[str, float]) -> Score:
    """Per-seed weighted geometric means over ``tasks``; ``results[i]`` is seed ``i``'s."""
    if not tasks or any(r.reason or any(t in r.not_applicable for t in tasks) for r in results):
        return Score(None, None)
    values = [weighted_geometric_mean([r.accuracy[t] / max(base[t], 1e-12) for t in tasks], weights) for r in results]
    per_seed = {t: [r.accuracy[t] for r in results] for t in tasks}
    return Score(statistics.fmean(values), statistics.pstdev(values), [round(v, 6) for v in values],
                 {t: statistics.fmean(v) for t, v in per_seed.items()},
                 {t: [round(a, 6) for a in v] for t, v in per_seed.items()})


def rescore(formulas: list, prepared: list[PreparedTask], check: list[PreparedTask] | None = None, *,
            seeds: int = 3, seed: int = 0, execution: Execution = SERIAL, baselines: bool = True,
            allocations: tuple[str, ...] = (), variants_only: bool = False, seed_formulas: list = (),
            progress: bool = False) -> list[RescoredRow]:
    """Rows for ``formulas`` (Formula objects or text), then every classic criterion, every Torch-Pruning
    importance and random, each measured on ``seeds`` replicates (see the module docstring) where ``execution``
    says (one backend serves every replicate); re-scoring never uses a fidelity ladder.  The baselines are also
    measured under each of ``allocations`` that changes the tasks' own; with ``variants_only`` the formulas are
    measured under those allocations only (rows of kind ``variant``, no baselines).  ``seed_formulas`` get rows of
    kind ``seed`` under the tasks' own allocation (the best seed of an evolution, to pair the winner with).
    ``progress`` shows a bar over the replicates (plain lines in a log: ``prunevo.progress``)."""
    fitness_tasks = holdout_tasks(prepared, 1)
    check_tasks = holdout_tasks(check or [], 1)
    own = own_allocation(fitness_tasks + check_tasks)
    kind = "variant" if variants_only else "formula"
    named = [(str(getattr(f, "text", f)), kind, as_criterion(f)) for f in formulas]
    if not variants_only:
        named += [(str(getattr(f, "text", f)), "seed", as_criterion(f)) for f in seed_formulas]
    with_baselines = baselines and not variants_only
    if with_baselines:
        named += [(name, "baseline", None) for name in BASELINE_NAMES]  # as each allocation runs it (as_baseline)
    backend = Backend(execution.backend, execution.n_jobs, execution.address)
    measured: dict[str, list[tuple[str, str, list[FitnessResult]]]] = {}  # allocation -> rows' results by seed
    try:
        for i in track(range(seeds), "re-score", "seed", progress):
            replicate_seed = derive_seed(seed, "rescore", i)
            tasks = [replicate(t, derive_seed(replicate_seed, t.task.identity())) for t in fitness_tasks + check_tasks]
            variants = allocation_variants(tasks, allocations)
            for allocation, variant_tasks in ([] if variants_only else [(own, tasks)]) + variants:
                mine = named if allocation == own or variants_only else [n for n in named if n[1] == "baseline"]
                criteria = [c or as_baseline(name, allocation) for name, _, c in mine]
                if with_baselines:
                    mine = mine + [(RANDOM, "baseline", RandomCriterion(replicate_seed))]
                    criteria.append(RandomCriterion(replicate_seed))
                evaluator = Evaluator(variant_tasks, execution=execution, seed=replicate_seed, backend=backend)
                results = evaluator.evaluate(criteria, full=True)
                rows = measured.setdefault(allocation, [(n, k, []) for n, k, _ in mine])
                for (_, _, per_seed), result in zip(rows, results):
                    per_seed.append(result)
    finally:
        backend.close()
    fitness_names = [t.task.name for t in fitness_tasks]
    check_names = [t.task.name for t in check_tasks]
    base = {t.task.name: t.base_val_accuracy for t in fitness_tasks + check_tasks}
    out = []
    for allocation, rows in measured.items():
        for name, row_kind, mine in rows:
            first = next((r for r in mine if r.reason), mine[0])
            not_applicable = {t: why for r in mine for t, why in r.not_applicable.items()}
            out.append(RescoredRow(name, row_kind,
                                   _scores(mine, fitness_names, [t.task.weight for t in fitness_tasks], base),
                                   _scores(mine, check_names, [t.task.weight for t in check_tasks], base)
                                   if check_tasks else None,
                                   first.reason, not_applicable, allocation))
    return out


def best_rescored(rows: list[RescoredRow], kind: str) -> RescoredRow | None:
    """The ``kind`` row with the best mean re-scored fitness (comparable rows only): for ``baseline``, the best
    (criterion, allocation) pair."""
    return max((r for r in rows if r.kind == kind and r.comparable and r.name != RANDOM),
               key=lambda r: r.fitness.mean, default=None)


def evolution_gain(winner: RescoredRow | None, best_seed: RescoredRow | None):
    """The search's own contribution: ``winner``'s held-out values minus ``best_seed``'s, paired by re-scoring
    seed (a ``verdict.PairedDifference``), or None when either is missing or not comparable."""
    from prunevo.verdict import paired_difference

    if winner is None or best_seed is None or not (winner.comparable and best_seed.comparable):
        return None
    return paired_difference(winner.fitness.values, best_seed.fitness.values)


def verdicts(rows: list[RescoredRow], winner: str) -> list[str]:
    """The ``winner`` formula against the best classic, the best (criterion, allocation) pair, paired by seed: on
    the fitness tasks' held-out data (the geometric mean of relative accuracy), the same for the winner under each
    other allocation measured (where its gain comes from), then on each check task (top-1 against the best pair
    *on that task*).  One line each (see ``prunevo.verdict``)."""
    from prunevo.verdict import paired_difference, verdict

    won = next(r for r in rows if r.name == winner and r.kind == "formula")
    variants = [r for r in rows if r.name == winner and r.kind == "variant"]
    baselines = [r for r in rows if r.kind == "baseline" and r.name != RANDOM and r.reason is None]
    lines = []
    classic = best_rescored(rows, "baseline")
    for row in [won, *variants]:
        if classic is not None and row.comparable:
            name = "winner" + (f" ({row.allocation})" if row.allocation else "")
            lines.append(verdict(name, classic.label, paired_difference(row.fitness.values, classic.fitness.values),
                                 "held-out data (relative accuracy)"))
    for task in (won.check.seed_accuracy if won.check else {}):
        scored = [r for r in baselines if r.check is not None and task in r.check.seed_accuracy]
        best = max(scored, key=lambda r: r.check.accuracy[task], default=None)
        if best is not None:
            diff = paired_difference(won.check.seed_accuracy[task], best.check.seed_accuracy[task])
            lines.append(verdict("winner", best.label, diff, f"check task {task} (top-1)"))
    return lines
