"""Evolution settings: plain data, saved in every run directory."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from prunevo.errors import PrunevoError, RunError
from prunevo.fitness.backends import BACKENDS
from prunevo.fitness.jobs import MODES
from prunevo.fitness.ladder import Ladder
from prunevo.fitness.task_spec import DEFAULT_TASKS, TaskOverrides, build_tasks
from prunevo.training.regimes import regimes_text

__all__ = ["EvolutionConfig", "TaskOverrides"]


# what a resumed run may change: how long it runs, and where its workers and data are (none changes fitness)
RESUMABLE = ("generations", "n_jobs", "backend", "address", "data_root", "cache_dir")


@dataclass(frozen=True)
class EvolutionConfig:
    tasks: tuple[str, ...] = DEFAULT_TASKS
    task_weights: tuple[float, ...] | None = None  # weights of the geometric mean; equal by default
    overrides: TaskOverrides = field(default_factory=TaskOverrides)
    population: int = 48
    generations: int = 10
    seed: int = 0
    n_jobs: int = 2
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
    redraw_tries: int = 5  # mutate again an offspring that selects already-evaluated masks, up to this often
    rescore_seeds: int = 3  # replicates (calibration batch, BN re-estimation, fine-tune) of the final re-scoring on held-out data (0: none)
    check_tasks: tuple[str, ...] = ()  # tasks never used for fitness, scored at the end like the re-scoring
    random_baseline_seeds: int = 3
    data_root: str | None = None
    cache_dir: str | None = None
    # throughput (fitness.ladder, fitness.jobs, fitness.backends): how fitness is measured, and where
    ladder: tuple[float, ...] = ()  # shares promoted past each fidelity rung; () = every selection gets the full measurement
    ladder_subset: int = 500  # validation images scored at rung 0
    ladder_recal: int = 8  # BatchNorm recalibration batches (of 256 training images) at rung 0
    batching: str = "auto"  # how a job scores its candidates: auto | loop | fused | off
    stack: int = 16  # candidates per fused pass
    device: str = "cpu"  # where fitness jobs train: cpu, cuda, cuda:N
    backend: str = "loky"  # loky (local processes) | dask | ray; never changes fitness
    address: str | None = None  # a running Dask scheduler or Ray cluster (None: start a local one)

    @property
    def initial_heights(self) -> tuple[int, int]:
        """(min, max) height of the initial population's trees (DEAP's genHalfAndHalf bounds)."""
        top = self.init_max_height if self.init_max_height is not None else min(4, self.max_height)
        return self.init_min_height, top

    def __post_init__(self) -> None:
        checks = [
            (self.population >= 2, f"population must be at least 2, got {self.population}"),
            (self.generations >= 0, f"generations must be >= 0, got {self.generations}"),
            (self.n_jobs >= 1, f"n_jobs must be >= 1, got {self.n_jobs}"),
            (0 <= self.elitism < self.population, f"elitism must be in [0, population), got {self.elitism}"),
            (2 <= self.max_height <= 17, f"max_height must be in [2, 17], got {self.max_height}"),
            (1 <= self.init_min_height <= self.initial_heights[1] <= self.max_height,
             f"need 1 <= init_min_height <= init_max_height <= max_height, got {self.init_min_height}, "
             f"{self.initial_heights[1]}, {self.max_height}"),
            (1.0 <= self.parsimony_size <= 2.0, f"parsimony_size must be in [1, 2], got {self.parsimony_size}"),
            (len(self.tasks) >= 1, "at least one task is needed"),
            (self.task_weights is None or len(self.task_weights) == len(self.tasks),
             "task_weights needs one weight per task"),
            (self.redraw_tries >= 0, f"redraw_tries must be >= 0, got {self.redraw_tries}"),
            (0 <= self.rescore_seeds <= 16, f"rescore_seeds must be in [0, 16], got {self.rescore_seeds}"),
            (self.batching in ("auto", *MODES), f"unknown batching {self.batching!r}; allowed: auto, {', '.join(MODES)}"),
            (1 <= self.stack <= 1024, f"stack must be in [1, 1024], got {self.stack}"),
            (self.backend in BACKENDS, f"unknown backend {self.backend!r}; allowed: {', '.join(BACKENDS)}"),
            (not self.check_tasks or self.rescore_seeds > 0, "check tasks are scored by the re-scoring: "
             "rescore_seeds must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise PrunevoError(message)
        self.ladder_spec()  # validates the shares
        tasks = self.task_list() + self.check_task_list()  # validates every spec and override
        for i, task in enumerate(tasks):
            for other in tasks[:i]:
                if task.name == other.name or task.identity() == other.identity():
                    raise PrunevoError(f"task {task.name!r} is given twice (as {other.name!r}); fitness and check "
                                       f"tasks must all differ")

    def task_list(self) -> list:
        """The run's tasks, with the run-wide overrides and weights applied."""
        return build_tasks(self.tasks, self.task_weights, self.overrides)

    def check_task_list(self) -> list:
        """Tasks never used for fitness, scored at the end (run-wide overrides apply to them too)."""
        return build_tasks(self.check_tasks, None, self.overrides)

    @property
    def regime(self) -> str:
        """The fitness tasks' regime (one-shot, short or full fine-tune; ``mixed (...)`` when they differ)."""
        return regimes_text([t.finetune.epochs for t in self.task_list()])

    def evaluator_options(self, ladder: bool = True) -> dict:
        """Keyword arguments of ``fitness.Evaluator`` for this run (without the ladder: full measurements)."""
        return dict(n_jobs=self.n_jobs, seed=self.seed, ladder=self.ladder_spec() if ladder else None,
                    mode=self.batching, stack=self.stack, backend=self.backend, address=self.address,
                    device=self.device)

    def ladder_spec(self) -> Ladder | None:
        return Ladder(tuple(self.ladder), self.ladder_subset, self.ladder_recal) if self.ladder else None

    def to_json(self) -> dict:
        """The fields, and the regime they evolve for (derived: ``from_json`` ignores it)."""
        return {**asdict(self), "regime": self.regime}

    @classmethod
    def from_json(cls, data: dict) -> "EvolutionConfig":
        try:
            values = dict(data)
            values.pop("regime", None)  # derived from the tasks
            values["tasks"] = tuple(values["tasks"])
            values["check_tasks"] = tuple(values.get("check_tasks", ()))
            values["ladder"] = tuple(values.get("ladder", ()))
            if values.get("task_weights") is not None:
                values["task_weights"] = tuple(values["task_weights"])
            values["overrides"] = TaskOverrides.from_json(values.get("overrides", {}))
            known = {f.name for f in fields(cls)}
            unknown = set(values) - known
            if unknown:
                raise RunError(f"unknown config fields {sorted(unknown)}")
            return cls(**values)
        except (KeyError, TypeError) as exc:
            raise RunError(f"run config is malformed: {exc}") from None
