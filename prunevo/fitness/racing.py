"""Racing: a leader's fitness measured again on fresh calibration draws, so that selection reads a mean.

One measurement of a data-driven criterion is one draw of its calibration batch (so of its scores and its
selection) and of its BatchNorm re-estimation: on a ResNet-20 pruned one-shot to 25% of the MACs one formula's
fitness ran from 0.39 to 0.55 over five draws.  Ranking hundreds of candidates on one draw each puts the lucky
ones on top (the winner's curse).  Racing measures only the leaders again, as successive halving does with the
budget running the other way (Jamieson & Talwalkar, AISTATS 2016; "racing" after Maron & Moore, 1994, and
irace, López-Ibáñez et al., 2016): draw 0 is the task as the evaluator measures it, draw ``d > 0`` the same task,
data and validation images with its own stratified calibration batch, seeded from the run's seed, the word
"race" and ``d`` (``PreparedTask.redrawn``: its own BatchNorm batches and fine-tune seed too).  A raced
candidate's fitness is the mean over the draws, less ``risk`` standard deviations of them (``raced_value``).
"""
from __future__ import annotations

import statistics

from prunevo.errors import PrunevoError
from prunevo.fitness.backends import Backend
from prunevo.fitness.evaluator import Evaluator, FitnessResult
from prunevo.fitness.execution import SERIAL, Execution
from prunevo.fitness.scoring import allocation_variants, own_allocation
from prunevo.fitness.tasks import PreparedTask
from prunevo.utils import derive_seed


def draw_seed(seed: int, draw: int, prepared: PreparedTask) -> int:
    """The calibration seed of race draw ``draw`` (> 0) of a task."""
    return derive_seed(seed, "race", draw, prepared.task.identity())


class Race:
    """The extra draws (``draws - 1`` of them) of the fitness tasks ``prepared`` on validation data.

    ``measure`` returns each criterion's fitness on every extra draw; evaluations are cached per draw
    (``caches``, what checkpoints store), so a selection is measured once per draw.  ``backend`` is a started
    ``Backend`` to share with the run's evaluator.

    Raises PrunevoError when ``draws`` < 2.
    """

    def __init__(self, prepared: list[PreparedTask], draws: int, *, execution: Execution = SERIAL, seed: int = 0,
                 backend: Backend | None = None, caches: list[dict[str, float]] | None = None):
        if draws < 2:
            raise PrunevoError(f"{{param:race_draws}} must be at least 2, got {draws}")
        self.draws = draws
        self.execution, self.seed, self.backend = execution, seed, backend
        self.tasks = [[p.redrawn(draw_seed(seed, d, p)) for p in prepared] for d in range(1, draws)]
        self.own = own_allocation(prepared)
        caches = caches or [{} for _ in self.tasks]
        self._evaluators = {self.own: [self._evaluator(tasks, cache) for tasks, cache in zip(self.tasks, caches)]}

    def _evaluator(self, tasks: list[PreparedTask], cache: dict[str, float] | None = None) -> Evaluator:
        return Evaluator(tasks, execution=self.execution, seed=self.seed, backend=self.backend, cache=cache)

    @property
    def caches(self) -> list[dict[str, float]]:
        """Each extra draw's fitness cache under the tasks' own allocation (sorted: checkpoints compare equal)."""
        return [dict(sorted(e.cache.items())) for e in self._evaluators[self.own]]

    def measure(self, criteria: list, allocation: str | None = None) -> list[list[FitnessResult]]:
        """Full measurements of ``criteria`` on each extra draw: ``out[d][i]`` is criterion ``i`` on draw
        ``d + 1``, under ``allocation`` (None: the tasks' own)."""
        allocation = allocation or self.own
        if allocation not in self._evaluators:
            variants = [dict(allocation_variants(tasks, (allocation,))).get(allocation) for tasks in self.tasks]
            self._evaluators[allocation] = (self._evaluators[self.own] if None in variants  # it changes nothing
                                            else [self._evaluator(tasks) for tasks in variants])
        return [e.evaluate(criteria, full=True) for e in self._evaluators[allocation]]

    def close(self) -> None:
        """Release what the draws' evaluators hold (a shared backend stays open)."""
        for evaluators in self._evaluators.values():
            for e in evaluators:
                e.close()


def raced_value(draws: list[float], risk: float = 0.0) -> float:
    """A raced candidate's fitness: the mean over its draws minus ``risk`` times their standard deviation (the
    sample's, n - 1).  A risk of 1 prefers a criterion whose selection holds up from one calibration batch to the
    next: the one a user's own calibration batch will reproduce, and whose verdict is narrow."""
    mean = statistics.fmean(draws)
    return mean - risk * statistics.stdev(draws) if risk and len(draws) > 1 else mean
