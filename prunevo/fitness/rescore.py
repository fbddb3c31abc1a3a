"""Re-scoring: fitness measured again on fresh seeds and on images evolution never saw.

Picking winners on one validation split and one seed favours the candidate that got lucky there.  Re-scoring
measures each criterion again on each task's held-out split (``TaskData.holdout``: the test split, or the
half of the validation split that fitness never reads), relative to the unpruned net on that split, with
``seeds`` independent replicates.  Replicate ``i`` draws its own class-stratified calibration batch (so the
criterion's scores, and its selection, may change), its own BatchNorm re-estimation and fine-tune seed, and
``random``'s own draw; every criterion gets the same replicate ``i``, so two criteria can be compared seed by
seed (``prunevo.verdict``).  Seeds derive from the run's seed and the word "rescore".  It reports the mean and
standard deviation over the replicates, on the fitness tasks and, separately, on check tasks that evolution
never used.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, replace

from prunevo.fitness.backends import Backend
from prunevo.fitness.evaluator import Evaluator, FitnessResult, weighted_geometric_mean
from prunevo.fitness.execution import SERIAL, Execution
from prunevo.fitness.pretrain import build_for
from prunevo.fitness.tasks import PreparedTask
from prunevo.pruning.calibration import Calibration
from prunevo.pruning.criteria import BASELINE_NAMES, RANDOM, RandomCriterion, as_criterion
from prunevo.zoo.stratify import stratified_batch
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
    name: str
    kind: str  # "formula" (hall of fame) or "baseline"
    fitness: Score  # on the fitness tasks' held-out splits
    check: Score | None = None  # on the check tasks
    reason: str | None = None
    not_applicable: dict[str, str] = field(default_factory=dict)

    @property
    def comparable(self) -> bool:
        return self.reason is None and not self.not_applicable and self.fitness.mean is not None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "RescoredRow":
        check = data.get("check")
        return cls(data["name"], data["kind"], Score(**data["fitness"]), Score(**check) if check else None,
                   data.get("reason"), data.get("not_applicable") or {})


def holdout_tasks(prepared: list[PreparedTask], seeds: int) -> list[PreparedTask]:
    """The tasks scored on their held-out split with ``seeds`` fine-tune seeds (the calibration batch, and so
    the selection, of the fitness tasks)."""
    out = []
    for p in prepared:
        model = build_for(p.task.model, p.data.input_shape, p.data.num_classes)
        load_state(model, p.base_state)
        data = replace(p.data, val=p.data.holdout)
        out.append(replace(p, task=replace(p.task, seeds=seeds), data=data, base_val_accuracy=top1(model, data.val),
                           split="holdout"))
    return out


def replicate(held: PreparedTask, seed: int) -> PreparedTask:
    """A held-out task (see ``holdout_tasks``, one fine-tune seed) with its own calibration batch, drawn from
    ``seed``: a task of its own (its identity, so its cache keys and fine-tune seed, differ)."""
    task = replace(held.task, seeds=1, calibration_seed=seed)
    x, y = stratified_batch(held.data.train.x, held.data.train.targets, task.calibration_per_class, seed)
    calibration = Calibration(held.calibration.model, held.groups, x, y, held.data.num_classes,
                              consumers=task.prune.domino == "io")
    return replace(held, task=task, calibration=calibration)


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
            progress: bool = False) -> list[RescoredRow]:
    """Rows for ``formulas`` (Formula objects or text), then every classic criterion, every Torch-Pruning
    importance and random, each measured on ``seeds`` replicates (see the module docstring) where ``execution``
    says (one backend serves every replicate); re-scoring never uses a fidelity ladder.
    ``progress`` shows a bar over the replicates."""
    from tqdm.auto import tqdm

    fitness_tasks = holdout_tasks(prepared, 1)
    check_tasks = holdout_tasks(check or [], 1)
    named = [(str(getattr(f, "text", f)), "formula", as_criterion(f)) for f in formulas]
    if baselines:
        named += [(name, "baseline", as_criterion(name)) for name in BASELINE_NAMES]
    backend = Backend(execution.backend, execution.n_jobs, execution.address)
    per_seed: list[list[FitnessResult]] = []
    try:
        for i in tqdm(range(seeds), desc="re-score", unit="seed", disable=not progress):
            replicate_seed = derive_seed(seed, "rescore", i)
            tasks = [replicate(t, derive_seed(replicate_seed, t.task.identity())) for t in fitness_tasks + check_tasks]
            criteria = [c for _, _, c in named] + ([RandomCriterion(replicate_seed)] if baselines else [])
            evaluator = Evaluator(tasks, execution=execution, seed=replicate_seed, backend=backend)
            per_seed.append(evaluator.evaluate(criteria, full=True))
    finally:
        backend.close()
    fitness_names = [t.task.name for t in fitness_tasks]
    check_names = [t.task.name for t in check_tasks]
    base = {t.task.name: t.base_val_accuracy for t in fitness_tasks + check_tasks}
    rows = []
    for k, (name, kind) in enumerate([(n, kind) for n, kind, _ in named] + ([(RANDOM, "baseline")] if baselines else [])):
        mine = [results[k] for results in per_seed]
        first = next((r for r in mine if r.reason), mine[0])
        not_applicable = {t: why for r in mine for t, why in r.not_applicable.items()}
        rows.append(RescoredRow(name, kind,
                                _scores(mine, fitness_names, [t.task.weight for t in fitness_tasks], base),
                                _scores(mine, check_names, [t.task.weight for t in check_tasks], base)
                                if check_tasks else None,
                                first.reason, not_applicable))
    return rows


def best_rescored(rows: list[RescoredRow], kind: str) -> RescoredRow | None:
    """The ``kind`` row with the best mean re-scored fitness (comparable rows only)."""
    return max((r for r in rows if r.kind == kind and r.comparable and r.name != RANDOM),
               key=lambda r: r.fitness.mean, default=None)


def verdicts(rows: list[RescoredRow], winner: str) -> list[str]:
    """The ``winner`` formula against the best classic, paired by seed: on the fitness tasks' held-out data
    (the geometric mean of relative accuracy), then on each check task (top-1 against the best classic *on that
    task*).  One line each (see ``prunevo.verdict``)."""
    from prunevo.verdict import paired_difference, verdict

    won = next(r for r in rows if r.name == winner and r.kind == "formula")
    baselines = [r for r in rows if r.kind == "baseline" and r.name != RANDOM and r.reason is None]
    lines = []
    classic = best_rescored(rows, "baseline")
    if classic is not None and won.comparable:
        lines.append(verdict("winner", classic.name, paired_difference(won.fitness.values, classic.fitness.values),
                             "held-out data (relative accuracy)"))
    for task in (won.check.seed_accuracy if won.check else {}):
        scored = [r for r in baselines if r.check is not None and task in r.check.seed_accuracy]
        best = max(scored, key=lambda r: r.check.accuracy[task], default=None)
        if best is not None:
            diff = paired_difference(won.check.seed_accuracy[task], best.check.seed_accuracy[task])
            lines.append(verdict("winner", best.name, diff, f"check task {task} (top-1)"))
    return lines
