"""Re-scoring: fitness measured again on fresh fine-tune seeds and on images evolution never saw.

Selection on one validation split and one fine-tune seed favours the candidate that got lucky there.
Re-scoring fine-tunes each criterion's masks again with ``seeds`` new seeds (drawn from the run's seed
and the word "rescore") and measures accuracy on each task's held-out split (``TaskData.holdout``: the
test split, or the half of the validation split that fitness never reads), relative to the unpruned
net on that split.  It reports the mean and standard deviation over the seeds, on the fitness tasks
and, separately, on check tasks that evolution never used.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, replace

from prunevo.fitness.evaluator import Evaluator, FitnessResult, weighted_geometric_mean
from prunevo.fitness.pretrain import build_for
from prunevo.fitness.tasks import PreparedTask
from prunevo.pruning.criteria import BASELINE_NAMES, RANDOM, RandomCriterion, as_criterion
from prunevo.training import top1
from prunevo.utils import derive_seed


@dataclass
class Score:
    """Mean and standard deviation over seeds of the weighted geometric mean of relative accuracy."""

    mean: float | None
    std: float | None
    values: list[float] = field(default_factory=list)
    accuracy: dict[str, float] = field(default_factory=dict)  # per task, mean over seeds

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
    """The tasks scored on their held-out split with ``seeds`` fine-tune seeds."""
    out = []
    for p in prepared:
        model = build_for(p.task.model, p.data.input_shape, p.data.num_classes)
        model.load_state_dict(p.base_state)
        data = replace(p.data, val=p.data.holdout)
        out.append(replace(p, task=replace(p.task, seeds=seeds), data=data, base_val_accuracy=top1(model, data.val),
                           split="holdout"))
    return out


def _scores(results: list[FitnessResult], tasks: list[PreparedTask], seeds: int) -> Score:
    """Per-seed weighted geometric means over ``tasks`` (the tasks where every result applies)."""
    if not tasks or any(r.reason or any(t.task.name in r.not_applicable for t in tasks) for r in results):
        return Score(None, None)
    values = []
    for r in results:
        for i in range(seeds):
            rel = [r.seed_accuracy[t.task.name][i] / max(t.base_val_accuracy, 1e-12) for t in tasks]
            values.append(weighted_geometric_mean(rel, [t.task.weight for t in tasks]))
    accuracy = {t.task.name: statistics.fmean(statistics.fmean(r.seed_accuracy[t.task.name]) for r in results)
                for t in tasks}
    return Score(statistics.fmean(values), statistics.pstdev(values), [round(v, 6) for v in values], accuracy)


def rescore(formulas: list, prepared: list[PreparedTask], check: list[PreparedTask] | None = None, seeds: int = 3,
            seed: int = 0, n_jobs: int = 1, baselines: bool = True, **options) -> list[RescoredRow]:
    """Rows for ``formulas`` (Formula objects or text), then every classic criterion, every Torch-Pruning
    importance and random (``seeds`` draws, each with every fine-tune seed).  ``options`` go to the
    ``Evaluator`` (batching mode, backend, device...); re-scoring never uses a fidelity ladder."""
    fitness_tasks = holdout_tasks(prepared, seeds)
    check_tasks = holdout_tasks(check or [], seeds)
    options.pop("ladder", None)
    with Evaluator(fitness_tasks + check_tasks, n_jobs=n_jobs, seed=derive_seed(seed, "rescore"), **options) as evaluator:
        return _rescore_with(evaluator, formulas, fitness_tasks, check_tasks, seeds, baselines)


def _rescore_with(evaluator: Evaluator, formulas: list, fitness_tasks: list[PreparedTask],
                  check_tasks: list[PreparedTask], seeds: int, baselines: bool) -> list[RescoredRow]:
    named = [(str(getattr(f, "text", f)), "formula", [as_criterion(f)]) for f in formulas]
    if baselines:
        named += [(name, "baseline", [as_criterion(name)]) for name in BASELINE_NAMES]
        named.append((RANDOM, "baseline", [RandomCriterion(s) for s in range(seeds)]))
    flat = [c for _, _, criteria in named for c in criteria]
    results = iter(evaluator.evaluate(flat, full=True))
    rows = []
    for name, kind, criteria in named:
        mine = [next(results) for _ in criteria]
        first = mine[0]
        rows.append(RescoredRow(name, kind, _scores(mine, fitness_tasks, seeds),
                                _scores(mine, check_tasks, seeds) if check_tasks else None,
                                first.reason, first.not_applicable))
    return rows


def best_rescored(rows: list[RescoredRow], kind: str) -> RescoredRow | None:
    """The ``kind`` row with the best mean re-scored fitness (comparable rows only)."""
    return max((r for r in rows if r.kind == kind and r.comparable and r.name != RANDOM),
               key=lambda r: r.fitness.mean, default=None)
