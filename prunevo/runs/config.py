"""Evolution settings: plain data, saved in every run directory."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable

from prunevo.configs import flatten
from prunevo.errors import PrunevoError, RunError
from prunevo.fitness.config import FitnessConfig
from prunevo.fitness.execution import Execution
from prunevo.fitness.ladder import Ladder
from prunevo.fitness.task_spec import DEFAULT_CHECK_TASKS, DEFAULT_TASKS, TaskOverrides, build_tasks

__all__ = ["EvolutionConfig", "ResumeDifferences", "TaskOverrides", "resume_differences"]


# what a resumed run may change: how long it runs, and where its workers and data are (none changes fitness);
# nested fields by their path
RESUMABLE = ("generations", "execution.n_jobs", "execution.backend", "execution.address", "data_root", "cache_dir")
_EXECUTION_FIELDS = tuple(f.name for f in fields(Execution))  # flat in the config.json of older runs


@dataclass(frozen=True, kw_only=True)
class EvolutionConfig(FitnessConfig):
    """An evolution's settings: a ``FitnessConfig`` (tasks, seed, data, execution) and the genetic programming
    around it.  Saved as ``config.json`` in every run directory; a resumed run may change only ``RESUMABLE``.

    The loop follows DEAP's ``eaSimple`` with typed trees (``deap.gp``): tournament selection with a double
    tournament on size against bloat (Luke & Panait, 2002), one-point crossover and subtree or node mutation
    (``varAnd``) under a static height limit, elitism, and the classic criteria as seeds of the first generation.

    Attributes:
        population: individuals per generation (>= 2).
        generations: generations after the initial one (>= 0); a resumed run may raise it.
        tournament_size: fitness tournament size (DEAP's ``selDoubleTournament``).
        parsimony_size: size tournament in [1, 2]: the smaller of two trees wins with probability size/2.
        crossover_prob: probability that a pair of offspring is crossed over.
        mutation_prob: probability that an offspring is mutated.
        max_height: the tallest tree any operator may produce, in [2, 17] (Koza's limit).
        init_min_height: the initial population's smallest tree height.
        init_max_height: its tallest; None: ``min(4, max_height)``.
        elitism: best individuals copied unchanged into the next generation, in [0, population).
        hall_of_fame_size: distinct best formulas kept (``runs.hall_of_fame.HallOfFame``).
        seed_classics: start from the classic criteria written as formulas (``primitives.classic``).
        race: new selections raced each generation on fresh calibration draws (0: no racing).
        race_draws: measurements of a raced formula, in [2, 16].
        race_risk: a raced formula's fitness is its mean over the draws less this many standard deviations.
        node_mutation: share of mutations that replace one node by another of its type.
        redraw_tries: times an offspring that selects already-evaluated masks is mutated again.
        rescore_seeds: seeds of the end-of-run re-scoring on held-out images, in [0, 16] (0: none).
        check_tasks: task specs never used for fitness, scored at the end; None: the default check tasks when
            the tasks are the defaults and the run is re-scored, else none.
        random_baseline_seeds: draws the random criterion's baseline fitness is averaged over.
        ladder: shares of selections promoted past each fidelity rung; () measures every selection in full.
        ladder_subset: validation images scored at rung 0.
        ladder_recal: BatchNorm re-estimation batches (of 256 training images) at rung 0.

    Raises:
        PrunevoError: a value out of its range (the message names it), a malformed task spec or override, or
            a task given twice.

    Example:
        >>> from prunevo import EvolutionConfig
        >>> config = EvolutionConfig(population=8, generations=2)
        >>> config.tasks, config.regime
        (('resnet20@digits:size=32,macs=0.25,epochs=0,recal=1',), 'one-shot')
        >>> EvolutionConfig.from_json(config.to_json()) == config
        True
    """

    population: int = 48
    generations: int = 10
    tournament_size: int = 3
    parsimony_size: float = 1.2  # DEAP double tournament: the smaller tree wins with prob. size/2
    crossover_prob: float = 0.6
    mutation_prob: float = 0.3
    max_height: int = 8
    init_min_height: int = 1
    init_max_height: int | None = None  # None: min(4, max_height), so a low max_height alone is consistent
    elitism: int = 2
    hall_of_fame_size: int = 10
    seed_classics: bool = True
    # racing (fitness.racing): each generation the best ``race`` new selections are measured on ``race_draws`` - 1
    # fresh calibration draws and ranked on the mean; then only raced formulas enter the hall of fame (0: off)
    race: int = 8
    race_draws: int = 3
    race_risk: float = 1.0  # a raced formula's fitness: the mean over its draws less this many standard deviations
    # share of mutations that swap one node for another of its type (DEAP's mutNodeReplacement)
    node_mutation: float = 0.5
    redraw_tries: int = 5  # mutate again an offspring that selects already-evaluated masks, up to this often
    # replicates (calibration batch, BN re-estimation, fine-tune) of the final re-scoring on held-out data (0: none)
    rescore_seeds: int = 3
    # tasks never used for fitness, scored at the end like the re-scoring; None: DEFAULT_CHECK_TASKS when the
    # tasks are the defaults and the run is re-scored (a network family no default task uses), else none
    check_tasks: tuple[str, ...] | None = None
    random_baseline_seeds: int = 3
    # the fidelity ladder (fitness.ladder): how much of the full measurement each new selection gets
    ladder: tuple[float, ...] = ()  # shares promoted past each rung; () = every selection gets the full measurement
    ladder_subset: int = 500  # validation images scored at rung 0
    ladder_recal: int = 8  # BatchNorm recalibration batches (of 256 training images) at rung 0

    @property
    def initial_heights(self) -> tuple[int, int]:
        """(min, max) height of the initial population's trees (DEAP's genHalfAndHalf bounds)."""
        top = self.init_max_height if self.init_max_height is not None else min(4, self.max_height)
        return self.init_min_height, top

    def __post_init__(self) -> None:
        if self.check_tasks is None:  # frozen: resolved once, here, so a saved config says what ran
            default = self.tasks == DEFAULT_TASKS and self.rescore_seeds > 0
            object.__setattr__(self, "check_tasks", DEFAULT_CHECK_TASKS if default else ())
        checks = [
            (self.population >= 2, f"{{param:population}} must be at least 2, got {self.population}"),
            (self.generations >= 0, f"{{param:generations}} must be >= 0, got {self.generations}"),
            (0 <= self.elitism < self.population,
             f"{{param:elitism}} must be in [0, population), got {self.elitism}"),
            (2 <= self.max_height <= 17, f"{{param:max_height}} must be in [2, 17], got {self.max_height}"),
            (1 <= self.init_min_height <= self.initial_heights[1] <= self.max_height,
             f"need 1 <= init_min_height <= init_max_height <= max_height, got {self.init_min_height}, "
             f"{self.initial_heights[1]}, {self.max_height}"),
            (1.0 <= self.parsimony_size <= 2.0, f"parsimony_size must be in [1, 2], got {self.parsimony_size}"),
            (self.hall_of_fame_size >= 1, f"{{param:hall_of_fame_size}} must be >= 1, got {self.hall_of_fame_size}"),
            (self.race >= 0, f"{{param:race}} must be >= 0, got {self.race}"),
            (2 <= self.race_draws <= 16, f"{{param:race_draws}} must be in [2, 16], got {self.race_draws}"),
            (0.0 <= self.race_risk <= 3.0, f"{{param:race_risk}} must be in [0, 3], got {self.race_risk}"),
            (0.0 <= self.node_mutation <= 1.0, f"{{param:node_mutation}} must be in [0, 1], got {self.node_mutation}"),
            (self.redraw_tries >= 0, f"{{param:redraw_tries}} must be >= 0, got {self.redraw_tries}"),
            (0 <= self.rescore_seeds <= 16,
             f"{{param:rescore_seeds}} must be in [0, 16], got {self.rescore_seeds}"),
            (not self.check_tasks or self.rescore_seeds > 0, "check tasks are scored by the re-scoring: "
             "{param:rescore_seeds} must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise PrunevoError(message)
        super().__post_init__()
        self.ladder_spec()  # validates the shares
        tasks = self.task_list() + self.check_task_list()  # validates every check spec and override
        for i, task in enumerate(tasks):
            for other in tasks[:i]:
                if task.name == other.name or task.identity() == other.identity():
                    raise PrunevoError(f"task {task.name!r} is given twice (as {other.name!r}); fitness and check "
                                       f"tasks must all differ")

    def check_task_list(self) -> list:
        """Tasks never used for fitness, scored at the end (run-wide overrides apply to them too)."""
        return build_tasks(self.check_tasks, None, self.overrides)

    def ladder_spec(self) -> Ladder | None:
        return Ladder(tuple(self.ladder), self.ladder_subset, self.ladder_recal) if self.ladder else None

    def to_json(self) -> dict:
        """The fields, and the regime they evolve for (derived: ``from_json`` ignores it)."""
        return {**asdict(self), "regime": self.regime}

    @classmethod
    def from_json(cls, data: dict) -> "EvolutionConfig":
        """The config of ``to_json``; also reads runs saved before ``execution`` was nested (its fields flat).
        Raises RunError when the data is malformed or has unknown fields."""
        try:
            values = dict(data)
            values.pop("regime", None)  # derived from the tasks
            values.pop("data", None)  # what each step read, written by the run for people
            # runs from before allocation variants scored their baselines under the tasks' allocation only
            values["baseline_allocations"] = tuple(values.get("baseline_allocations", ()))
            values["tasks"] = tuple(values["tasks"])
            # runs from before racing and node mutation ran without them
            values.setdefault("race", 0)
            values.setdefault("node_mutation", 0.0)
            values.setdefault("race_risk", 0.0)  # and runs that raced before the risk penalty, on the mean
            values["check_tasks"] = tuple(values.get("check_tasks", ()))
            values["ladder"] = tuple(values.get("ladder", ()))
            if values.get("task_weights") is not None:
                values["task_weights"] = tuple(values["task_weights"])
            values["overrides"] = TaskOverrides.from_json(values.get("overrides", {}))
            flat = {k: values.pop(k) for k in _EXECUTION_FIELDS if k in values}
            values["execution"] = Execution(**{**values.get("execution", {}), **flat})
            known = {f.name for f in fields(cls)}
            unknown = set(values) - known
            if unknown:
                raise RunError(f"unknown config fields {sorted(unknown)}")
            return cls(**values)
        except (KeyError, TypeError) as exc:
            raise RunError(f"run config is malformed: {exc}") from None


@dataclass(frozen=True)
class ResumeDifferences:
    """How a requested config differs from the one a run was saved with (``resume_differences``).

    Attributes:
        changes: ``{path: (saved value, requested value)}`` of the ``RESUMABLE`` paths that differ: applied on resume.
        conflicts: the same for every other path that differs: a resumed run refuses them.
    """

    changes: dict[str, tuple[Any, Any]]
    conflicts: dict[str, tuple[Any, Any]]


def resume_differences(saved: EvolutionConfig, requested: EvolutionConfig,
                       paths: Iterable[str] | None = None) -> ResumeDifferences:
    """The one resume policy: what may change when a saved run resumes (``RESUMABLE``) and what may not.

    Args:
        saved: the run's config (``runs.result.saved_config``).
        requested: the config asked for.
        paths: the config paths to compare (``execution.n_jobs``); None: all.  The command line compares only the
            options a user typed, since the others hold defaults, not requests.

    Returns:
        The differences, by path in sorted order: the changes a resume applies and the conflicts it refuses.

    Example:
        >>> saved = EvolutionConfig(generations=5)
        >>> diff = resume_differences(saved, EvolutionConfig(generations=8, seed=1))
        >>> diff.changes, diff.conflicts
        ({'generations': (5, 8)}, {'seed': (0, 1)})
    """
    before, after = flatten(saved), flatten(requested)
    compared = sorted(after if paths is None else set(paths) & set(after))
    differ = {path: (before[path], after[path]) for path in compared if before[path] != after[path]}
    return ResumeDifferences({p: v for p, v in differ.items() if p in RESUMABLE},
                             {p: v for p, v in differ.items() if p not in RESUMABLE})
