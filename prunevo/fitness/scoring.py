"""Score criteria on tasks, side by side with the classic criteria, Torch-Pruning's importances and random."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from prunevo.fitness.config import FitnessConfig
from prunevo.fitness.evaluator import Evaluator, FitnessResult
from prunevo.fitness.execution import SERIAL, Execution
from prunevo.fitness.tasks import PreparedTask
from prunevo.pruning.criteria import BASELINE_NAMES, RANDOM, Criterion, RandomCriterion, as_criterion


@dataclass
class ScoreRow:
    """One criterion's fitness as reports show it: ``fitness`` is over the tasks where it applies (None
    when it applies to none, or when its scores are invalid: ``reason``)."""

    name: str
    fitness: float | None
    accuracy: dict[str, float]
    reason: str | None = None
    fitness_std: float = 0.0
    not_applicable: dict[str, str] = field(default_factory=dict)  # task -> why the criterion does not apply

    @property
    def comparable(self) -> bool:
        """Scored on every task: the rows that "best classic" and rankings compare."""
        return self.reason is None and not self.not_applicable and self.fitness is not None


def baseline_criteria() -> list[Criterion]:
    """Every classic criterion, then every Torch-Pruning importance (random is added separately)."""
    return [as_criterion(name) for name in BASELINE_NAMES]


def best_classic(rows: list[ScoreRow]) -> ScoreRow | None:
    """The best classic or Torch-Pruning criterion scored on every task (n/a and invalid ones excluded)."""
    candidates = [r for r in rows if r.name in BASELINE_NAMES and r.comparable]
    return max(candidates, key=lambda r: r.fitness, default=None)


def score_criteria(criteria: list, prepared: list[PreparedTask], *, execution: Execution = SERIAL, seed: int = 0,
                   baselines: bool = True, random_seeds: int = 3) -> list[ScoreRow]:
    """One row per criterion (a Formula, a criterion or a name), then (with ``baselines``) every classic
    criterion, every Torch-Pruning importance and random (mean of seeds), scored where ``execution`` says.
    Raises FormulaError for a criterion that does not parse."""
    with Evaluator(prepared, execution=execution, seed=seed) as evaluator:
        return score_with(evaluator, criteria, baselines, random_seeds)


def score_formulas(formulas: list, config: FitnessConfig | None = None, *, baselines: bool = True,
                   progress: bool = True) -> list[ScoreRow]:
    """Score criteria (Formula objects, formula text or files, names: ``l1``, ``tp-l2``, ``random``..., or
    objects that follow the ``Criterion`` protocol) on the tasks of ``config`` (default: ``FitnessConfig()``,
    the default tasks) beside the classic criteria, Torch-Pruning's importances and random.  Base nets are
    trained on first use (``progress``: a bar).

    Raises FormulaError for bad formula text (before any task is prepared), DataError for missing data."""
    config = config or FitnessConfig()
    criteria = [as_criterion(f) for f in formulas]
    prepared = config.prepare(progress=progress)
    return score_criteria(criteria, prepared, execution=config.execution, seed=config.seed, baselines=baselines)


def score_with(evaluator: Evaluator, criteria: list, baselines: bool = True, random_seeds: int = 3) -> list[ScoreRow]:
    """``score_criteria`` on an existing evaluator (its mask cache is shared); every row is a full measurement,
    also when the evaluator has a fidelity ladder."""
    chosen = [as_criterion(c) for c in criteria]
    if baselines:  # a baseline the caller named already has its row
        named = {c.name for c in chosen}
        chosen += [c for c in baseline_criteria() if c.name not in named]
    randoms = [RandomCriterion(s) for s in range(random_seeds)] if baselines else []
    results = evaluator.evaluate(chosen + randoms, full=True)
    rows = [_row(c.name, r) for c, r in zip(chosen, results)]
    if randoms:
        rr: list[FitnessResult] = results[len(chosen):]
        rows.append(ScoreRow(
            RANDOM, statistics.fmean(r.fitness for r in rr),
            {t: statistics.fmean(r.accuracy[t] for r in rr) for t in rr[0].accuracy},
            fitness_std=statistics.pstdev([r.fitness for r in rr]),
        ))
    return rows


def _row(name: str, result: FitnessResult) -> ScoreRow:
    # invalid scores keep the worst fitness evolution gives them; n/a shows the tasks where it applies
    fitness = result.fitness if result.reason else result.applicable_fitness
    return ScoreRow(name, fitness, result.accuracy, result.reason, not_applicable=result.not_applicable)


def baselines_to_json(rows: list[ScoreRow]) -> dict[str, dict]:
    """The ``baselines.json`` form of score rows (also kept in run checkpoints)."""
    out = {}
    for row in rows:
        out[row.name] = {"fitness": row.fitness, "accuracy": row.accuracy, "reason": row.reason,
                         "not_applicable": row.not_applicable}
        if row.name == RANDOM:
            out[row.name]["fitness_std"] = row.fitness_std
    return out


def baselines_from_json(data: dict[str, dict]) -> list[ScoreRow]:
    """Score rows from ``baselines.json`` (runs written before n/a existed have no ``not_applicable``)."""
    return [ScoreRow(name, b.get("fitness"), b.get("accuracy", {}), b.get("reason"), b.get("fitness_std", 0.0),
                     b.get("not_applicable") or {}) for name, b in data.items()]
