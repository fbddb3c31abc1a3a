"""Score criteria on tasks, side by side with the classic criteria, Torch-Pruning's importances and random.

Every baseline is scored under the tasks' own allocation and under each of the config's
``baseline_allocations`` (uniform and global by default), so that "best classic" is the best (criterion,
allocation) pair: a criterion whose win only shows that uniform widths are bad is not a better criterion.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace

from prunevo.fitness.config import FitnessConfig
from prunevo.fitness.evaluator import Evaluator, FitnessResult
from prunevo.fitness.execution import SERIAL, Execution
from prunevo.fitness.task_spec import with_allocation
from prunevo.fitness.tasks import PreparedTask
from prunevo.pruning.criteria import BASELINE_NAMES, RANDOM, Criterion, RandomCriterion, as_baseline, as_criterion


@dataclass
class ScoreRow:
    """One criterion's fitness as reports show it (``score_formulas``, a run's baselines).

    Attributes:
        name: the criterion's name or formula text.
        fitness: the weighted geometric mean over the tasks where it applies of pruned accuracy relative to the
            unpruned network's (1.0 = no loss); None when it applies to none, or its scores are invalid.
        accuracy: top-1 accuracy (a fraction) on each task's validation images, by task.
        reason: why ``fitness`` is None.
        fitness_std: the standard deviation over random's draws (0 for a deterministic criterion).
        not_applicable: task -> why the criterion does not apply there.
        allocation: the allocation it was scored under; None in old runs.
        variant: scored under another allocation than the tasks' own.

    Example:
        >>> from prunevo import ScoreRow
        >>> row = ScoreRow("l1", 0.93, {"small-vgg@digits": 0.81}, allocation="global")
        >>> row.label, row.comparable
        ('l1 (global)', True)
    """

    name: str
    fitness: float | None
    accuracy: dict[str, float]
    reason: str | None = None
    fitness_std: float = 0.0
    not_applicable: dict[str, str] = field(default_factory=dict)  # task -> why the criterion does not apply
    # the allocation it was scored under (``own_allocation`` of the tasks, or a variant's); None in old runs
    allocation: str | None = None
    variant: bool = False  # scored under another allocation than the tasks' own

    @property
    def label(self) -> str:
        """The name, with the allocation when rows of several allocations stand side by side."""
        return f"{self.name} ({self.allocation})" if self.allocation else self.name

    @property
    def comparable(self) -> bool:
        """Scored on every task: the rows that "best classic" and rankings compare."""
        return self.reason is None and not self.not_applicable and self.fitness is not None


def baseline_criteria(allocation: str | None = None) -> list[Criterion]:
    """Every classic criterion, then every Torch-Pruning importance (random is added separately), as they run
    under ``allocation`` (``pruning.criteria.as_baseline``: classics normalized under global allocation)."""
    return [as_baseline(name, allocation) for name in BASELINE_NAMES]


def best_classic(rows: list[ScoreRow]) -> ScoreRow | None:
    """The best (classic or Torch-Pruning criterion, allocation) pair scored on every task (n/a and invalid ones
    excluded)."""
    candidates = [r for r in rows if r.name in BASELINE_NAMES and r.comparable]
    return max(candidates, key=lambda r: r.fitness, default=None)


def own_allocation(tasks: list[PreparedTask]) -> str:
    """The tasks' allocation: uniform, global or random-search, or ``mixed`` when they differ."""
    found = {t.task.allocation for t in tasks}
    return found.pop() if len(found) == 1 else "mixed"


def allocation_variants(tasks: list[PreparedTask], allocations: tuple[str, ...]
                        ) -> list[tuple[str, list[PreparedTask]]]:
    """(allocation, the tasks under it) for each of ``allocations`` that changes some task's allocation: every
    task then allocates its widths that way (its own calibration, data and target kept)."""
    out, seen = [], {tuple(t.task.identity() for t in tasks)}
    for allocation in allocations:
        variant = [replace(t, task=with_allocation(t.task, allocation)) for t in tasks]
        key = tuple(t.task.identity() for t in variant)
        if key not in seen:
            seen.add(key)
            out.append((allocation, variant))
    return out


def score_criteria(criteria: list, prepared: list[PreparedTask], *, execution: Execution = SERIAL, seed: int = 0,
                   baselines: bool = True, random_seeds: int = 3,
                   allocations: tuple[str, ...] = ()) -> list[ScoreRow]:
    """One row per criterion (a Formula, a criterion or a name), then (with ``baselines``) every classic
    criterion, every Torch-Pruning importance and random (mean of seeds), scored where ``execution`` says;
    the baselines also under each of ``allocations`` that differs from the tasks' own (``baseline_rows``).
    Raises FormulaError for a criterion that does not parse."""
    with Evaluator(prepared, execution=execution, seed=seed) as evaluator:
        rows = score_with(evaluator, criteria, baselines, random_seeds)
        if baselines:
            rows += variant_baselines(evaluator, allocations, random_seeds)
        return rows


def variant_baselines(evaluator: Evaluator, allocations: tuple[str, ...], random_seeds: int = 3) -> list[ScoreRow]:
    """Every baseline (and random) under each of ``allocations`` that differs from the tasks' own, on the
    evaluator's tasks, seed and backend."""
    rows = []
    for allocation, tasks in allocation_variants(evaluator.tasks, allocations):
        with Evaluator(tasks, execution=evaluator.execution, seed=evaluator.seed, backend=evaluator.backend) as other:
            rows += [replace(r, allocation=allocation, variant=True)
                     for r in score_with(other, [], baselines=True, random_seeds=random_seeds)]
    return rows


def score_formulas(formulas: list, config: FitnessConfig | None = None, *, baselines: bool = True,
                   progress: bool = True) -> list[ScoreRow]:
    """Score criteria on fitness tasks, beside the classic criteria, Torch-Pruning's importances and random
    (``prunevo score``).

    Args:
        formulas: Formula objects, formula text or files, names (``l1``, ``tp-l2``, ``random``...), or objects
            that follow the ``Criterion`` protocol.
        config: the tasks and where jobs run (default: ``FitnessConfig()``, the default tasks).
        baselines: also score every classic criterion and random.
        progress: a progress bar while base nets train (on first use; cached).

    Returns:
        One row per criterion, the given ones first.

    Raises:
        FormulaError: bad formula text (before any task is prepared).
        DataError: missing data.

    Example:
        >>> from prunevo import Execution, FitnessConfig, score_formulas
        >>> config = FitnessConfig(tasks=("small-vgg@digits:epochs=0",), execution=Execution(n_jobs=1))
        >>> rows = score_formulas(["l1(W)", "random"], config, baselines=False, progress=False)
        >>> [(row.name, 0 < row.fitness <= 1.5) for row in rows]
        [('l1(W)', True), ('random', True)]
    """
    config = config or FitnessConfig()
    criteria = [as_criterion(f) for f in formulas]
    prepared = config.prepare(progress=progress)
    return score_criteria(criteria, prepared, execution=config.execution, seed=config.seed, baselines=baselines,
                          allocations=config.baseline_allocations)


def score_with(evaluator: Evaluator, criteria: list, baselines: bool = True, random_seeds: int = 3) -> list[ScoreRow]:
    """``score_criteria`` on an existing evaluator (its mask cache is shared); every row is a full measurement,
    also when the evaluator has a fidelity ladder."""
    own = own_allocation(evaluator.tasks)
    chosen = [as_criterion(c) for c in criteria]
    if baselines:  # a baseline the caller named already has its row
        named = {c.name for c in chosen}
        chosen += [c for c in baseline_criteria(own) if c.name not in named]
    randoms = [RandomCriterion(s) for s in range(random_seeds)] if baselines else []
    results = evaluator.evaluate(chosen + randoms, full=True)
    rows = [_row(c.name, r, own) for c, r in zip(chosen, results)]
    if randoms:
        rr: list[FitnessResult] = results[len(chosen):]
        rows.append(ScoreRow(
            RANDOM, statistics.fmean(r.fitness for r in rr),
            {t: statistics.fmean(r.accuracy[t] for r in rr) for t in rr[0].accuracy},
            fitness_std=statistics.pstdev([r.fitness for r in rr]), allocation=own,
        ))
    return rows


def _row(name: str, result: FitnessResult, allocation: str | None = None) -> ScoreRow:
    # invalid scores keep the worst fitness evolution gives them; n/a shows the tasks where it applies
    fitness = result.fitness if result.reason else result.applicable_fitness
    return ScoreRow(name, fitness, result.accuracy, result.reason, not_applicable=result.not_applicable,
                    allocation=allocation)


def baselines_to_json(rows: list[ScoreRow]) -> dict[str, dict]:
    """The ``baselines.json`` form of score rows (also kept in run checkpoints): keyed by the name under the
    tasks' own allocation, by ``name (allocation)`` under another."""
    out = {}
    for row in rows:
        key = row.label if row.variant else row.name
        out[key] = {"name": row.name, "allocation": row.allocation, "variant": row.variant, "fitness": row.fitness,
                    "accuracy": row.accuracy, "reason": row.reason, "not_applicable": row.not_applicable}
        if row.name == RANDOM:
            out[key]["fitness_std"] = row.fitness_std
    return out


def baselines_from_json(data: dict[str, dict]) -> list[ScoreRow]:
    """Score rows from ``baselines.json`` (runs written before n/a existed have no ``not_applicable``, before
    allocation variants no ``name`` and ``allocation``)."""
    return [ScoreRow(b.get("name", key), b.get("fitness"), b.get("accuracy", {}), b.get("reason"),
                     b.get("fitness_std", 0.0), b.get("not_applicable") or {}, b.get("allocation"),
                     b.get("variant", False))
            for key, b in data.items()]
