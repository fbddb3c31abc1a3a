"""A run's checkpoint: everything an evolution needs to resume, as one typed record (``checkpoint.json``).

Written atomically after every generation, so a run stopped at any moment resumes from its last completed
generation and, with the same config and seed, ends where an uninterrupted run ends (``tests/test_reproducible``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prunevo.errors import RunError
from prunevo.fitness.evaluator import EvaluatorStats
from prunevo.runs.hall_of_fame import Entry, HallOfFame, ParetoFront
from prunevo.runs.rundir import read_json
from prunevo.utils import atomic_write_json

VERSION = 1  # of checkpoint.json's format; another is refused, never misread
FILE = "checkpoint.json"
_REQUIRED = ("generation", "population", "hall_of_fame", "pareto", "cache", "log", "baselines")


@dataclass(frozen=True)
class Scored:
    """An evaluated individual as plain data: its formula's text, its fitness and why it failed, if it did."""

    text: str
    fitness: float
    reason: str | None = None


@dataclass(kw_only=True)
class Checkpoint:
    """The state of an evolution after a generation.

    Attributes:
        generation: the last completed generation (0 = the initial population).
        population: the population after it, in order.
        hall_of_fame: the best formulas so far (measured fully, or raced).
        pareto: the best formula of each complexity.
        cache: the evaluator's fitness cache (selection key -> measurement), which makes a resumed run skip
            what it measured.
        log: one row per generation (``log.csv``'s rows).
        baselines: the classic criteria's fitness (``baselines.json``'s content).
        evaluator: the evaluator's counters; None in checkpoints written before they were kept.
        race: the racing state (``evolve.racing.Racing.to_json``), when the run races.
        rescored: the re-scoring on fresh seeds and held-out data (``rescored.json``'s content), once done.

    Example:
        >>> from prunevo.runs.hall_of_fame import HallOfFame, ParetoFront
        >>> state = Checkpoint(generation=0, population=[Scored("l1(W)", 0.9)], hall_of_fame=HallOfFame(3),
        ...                    pareto=ParetoFront(), cache={}, log=[], baselines={})
        >>> Checkpoint.from_json(state.to_json(), hall_of_fame_size=3).population
        [Scored(text='l1(W)', fitness=0.9, reason=None)]
    """

    generation: int
    population: list[Scored]
    hall_of_fame: HallOfFame
    pareto: ParetoFront
    cache: dict[str, Any]
    log: list[dict]
    baselines: dict
    evaluator: EvaluatorStats | None = None
    race: dict | None = None
    rescored: dict | None = None
    extra: dict = field(default_factory=dict, repr=False)  # keys of a newer minor format, kept as they are

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``checkpoint.json`` (without its version), keys in a fixed order."""
        out: dict[str, Any] = {
            "generation": self.generation, "population": [asdict(s) for s in self.population],
            "hall_of_fame": [asdict(e) for e in self.hall_of_fame.entries],
            "pareto": {str(k): asdict(e) for k, e in self.pareto.by_complexity.items()},
            "cache": dict(sorted(self.cache.items())), "log": self.log, "baselines": self.baselines,
        }
        if self.evaluator is not None:
            out["evaluator"] = asdict(self.evaluator)
        if self.race is not None:
            out["race"] = self.race
        if self.rescored is not None:
            out["rescored"] = self.rescored
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any], *, hall_of_fame_size: int, where: str = FILE) -> Checkpoint:
        """The checkpoint in ``data`` (``to_json``'s form).

        Args:
            data: the JSON object.
            hall_of_fame_size: how many formulas the run's hall of fame keeps (its config's).
            where: the file, for messages.

        Raises:
            RunError: a key missing or a malformed entry, naming the file.
        """
        missing = [key for key in _REQUIRED if key not in data]
        if missing:
            raise RunError(f"{where} is corrupt: missing {', '.join(sorted(missing))}")
        known = {*_REQUIRED, "evaluator", "race", "rescored", "version"}
        try:
            return cls(generation=int(data["generation"]), population=[Scored(**s) for s in data["population"]],
                       hall_of_fame=HallOfFame(hall_of_fame_size, [Entry(**e) for e in data["hall_of_fame"]]),
                       pareto=ParetoFront({int(k): Entry(**e) for k, e in data["pareto"].items()}),
                       cache=dict(data["cache"]), log=list(data["log"]), baselines=data["baselines"],
                       evaluator=EvaluatorStats(**data["evaluator"]) if data.get("evaluator") else None,
                       race=data.get("race"), rescored=data.get("rescored"),
                       extra={k: v for k, v in data.items() if k not in known})
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise RunError(f"{where} is corrupt: {exc}") from None

    def write(self, run_dir: Path) -> None:
        """Write ``run_dir/checkpoint.json`` atomically (a stopped write leaves the previous one whole)."""
        atomic_write_json(Path(run_dir) / FILE, {"version": VERSION, **self.to_json()})

    @classmethod
    def read(cls, run_dir: Path, *, hall_of_fame_size: int) -> Checkpoint:
        """The checkpoint of ``run_dir``.

        Raises:
            RunError: none there, unreadable, another format version, or corrupt.
        """
        path = Path(run_dir) / FILE
        data = read_json(path, "checkpoint")
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise RunError(f"{path} has an unknown format (expected version {VERSION})")
        return cls.from_json(data, hall_of_fame_size=hall_of_fame_size, where=str(path))
