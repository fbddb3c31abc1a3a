"""What a criterion is scored on, and where: the settings ``prunevo score`` and every evolution share."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prunevo.errors import PrunevoError
from prunevo.fitness.execution import Execution
from prunevo.fitness.task_spec import DEFAULT_TASKS, TaskOverrides, build_tasks
from prunevo.pruning.allocation import ALLOCATIONS
from prunevo.training.regimes import regimes_text


@dataclass(frozen=True, kw_only=True)
class FitnessConfig:
    """What fitness measures: the tasks a criterion is scored on, and where (``prunevo score``; the base of
    ``EvolutionConfig``).

    Attributes:
        tasks: ``MODEL@DATASET[:key=value,...]`` specs or short names (``fitness.task_spec``; ``prunevo tasks``).
        task_weights: the weights of the geometric mean over tasks (None: the tasks' own ``weight=``, else equal).
        overrides: run-wide task options (``TaskOverrides``), under each task's own.
        seed: the seed of calibration images, fine-tunes and random criteria.
        data_root: where datasets live (MNIST/, FashionMNIST/, image folders).
        cache_dir: where base networks are cached (None: $PRUNEVO_CACHE or ~/.cache/prunevo).
        execution: where jobs run (``Execution``).
        baseline_allocations: the allocations every baseline is also scored under besides the tasks' own, so
            that "best classic" is the best (criterion, allocation) pair.

    Raises:
        PrunevoError: a malformed task spec or option, weights that do not match the tasks, an unknown
            allocation.

    Example:
        >>> from prunevo import FitnessConfig
        >>> config = FitnessConfig(tasks=("small-vgg@digits",))
        >>> config.regime, config.allocation
        ('short fine-tune', 'uniform')
        >>> FitnessConfig(tasks=("small-vgg@digits",), task_weights=(1.0, 2.0))
        Traceback (most recent call last):
        ...
        prunevo.errors.PrunevoError: task_weights needs one weight per task: 1 tasks, 2 weights
    """

    tasks: tuple[str, ...] = DEFAULT_TASKS
    task_weights: tuple[float, ...] | None = None  # weights of the geometric mean; equal by default
    overrides: TaskOverrides = field(default_factory=TaskOverrides)
    seed: int = 0
    data_root: str | None = None
    cache_dir: str | None = None
    execution: Execution = field(default_factory=Execution)
    baseline_allocations: tuple[str, ...] = ("uniform", "global")

    def __post_init__(self) -> None:
        if len(self.tasks) < 1:
            raise PrunevoError("at least one task is needed")
        for allocation in self.baseline_allocations:
            if allocation not in ALLOCATIONS:
                raise PrunevoError(f"{{param:baseline_allocations}} {allocation!r} is unknown; allowed: "
                                   f"{', '.join(ALLOCATIONS)}")
        if self.task_weights is not None and len(self.task_weights) != len(self.tasks):
            raise PrunevoError(f"{{param:task_weights}} needs one weight per task: {len(self.tasks)} tasks, "
                               f"{len(self.task_weights)} weights")
        self.task_list()  # validates every spec and override

    def task_list(self) -> list:
        """The tasks, with the run-wide overrides and weights applied."""
        return build_tasks(self.tasks, self.task_weights, self.overrides)

    def prepare(self, tasks: list | None = None, progress: bool = True) -> list:
        """``tasks`` (default: ``task_list()``) as ``PreparedTask`` with their base nets, trained now if not
        cached; ``progress``: a pretraining bar on a terminal, plain lines in a log.  Raises DataError when data
        is missing."""
        from prunevo.fitness.tasks import prepare_task  # the data and training stack, only when preparing

        cache = Path(self.cache_dir) if self.cache_dir else None
        return [prepare_task(t, self.data_root, cache_dir=cache, progress=progress)
                for t in (self.task_list() if tasks is None else tasks)]

    @property
    def allocation(self) -> str:
        """The tasks' allocation (uniform, global, random-search; ``mixed`` when they differ)."""
        found = {t.allocation for t in self.task_list()}
        return found.pop() if len(found) == 1 else "mixed"

    @property
    def regime(self) -> str:
        """The tasks' regime (one-shot, short or full fine-tune; ``mixed (...)`` when they differ)."""
        return regimes_text([t.regime for t in self.task_list()])
