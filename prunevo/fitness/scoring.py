"""Score one or more criteria on tasks, side by side with the classic criteria and random."""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from prunevo.fitness.evaluator import Evaluator, FitnessResult
from prunevo.fitness.tasks import PreparedTask
from prunevo.primitives.classic import classic_formulas
from prunevo.primitives.formula import Formula
from prunevo.pruning.criteria import FormulaCriterion, RandomCriterion


@dataclass
class ScoreRow:
    name: str
    fitness: float
    accuracy: dict[str, float]
    reason: str | None = None
    fitness_std: float = 0.0


def score_criteria(formulas: list[Formula], prepared: list[PreparedTask], n_jobs: int = 1, seed: int = 0,
                   baselines: bool = True, random_seeds: int = 3) -> list[ScoreRow]:
    """One row per formula, then (with ``baselines``) every classic criterion and random (mean of seeds)."""
    return score_with(Evaluator(prepared, n_jobs=n_jobs, seed=seed), formulas, baselines, random_seeds)


def score_with(evaluator: Evaluator, formulas: list[Formula], baselines: bool = True,
               random_seeds: int = 3) -> list[ScoreRow]:
    """``score_criteria`` on an existing evaluator (its mask cache is shared)."""
    named = [(f.name or f.text, f) for f in formulas]
    if baselines:
        named += [(name, f) for name, f in classic_formulas().items()]
    criteria = [FormulaCriterion(f) for _, f in named]
    randoms = [RandomCriterion(s) for s in range(random_seeds)] if baselines else []
    results = evaluator.evaluate(criteria + randoms)
    rows = [_row(name, r) for (name, _), r in zip(named, results)]
    if randoms:
        rr: list[FitnessResult] = results[len(criteria):]
        rows.append(ScoreRow(
            "random", statistics.fmean(r.fitness for r in rr),
            {t: statistics.fmean(r.accuracy[t] for r in rr) for t in rr[0].accuracy},
            fitness_std=statistics.pstdev([r.fitness for r in rr]),
        ))
    return rows


def _row(name: str, result: FitnessResult) -> ScoreRow:
    return ScoreRow(name, result.fitness, result.accuracy, result.reason)
