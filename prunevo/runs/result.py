"""A run directory read back: its config, hall of fame, Pareto front, baselines, log and re-scoring.

Below both ``evolve`` (which writes run directories) and ``transfer`` (which prunes with their winners), so that
neither imports the other.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from prunevo.errors import RunError
from prunevo.fitness.rescore import RescoredRow, best_rescored, evolution_gain
from prunevo.fitness.scoring import ScoreRow, baselines_from_json, best_classic
from prunevo.runs import rundir
from prunevo.runs.checkpoint import Checkpoint
from prunevo.runs.config import EvolutionConfig
from prunevo.runs.hall_of_fame import Entry


@dataclass
class RunResult:
    """An evolution run: what ``evolve`` returns and ``load_run`` reads back.

    Attributes:
        run_dir: its directory.
        config: its config.
        hall_of_fame: the best distinct formulas on validation data, best first (``best`` is the winner).
        pareto: the best formula of each complexity that no simpler one beats, simplest first.
        baselines: the classic criteria's fitness (``baselines.json``; ``baseline_rows`` as ``ScoreRow``).
        log: one row per generation (``log.csv``: best, median, evaluations, cache hit rate, seconds...).
        rescored: the hall of fame, the best seed and the baselines re-scored on fresh seeds and held-out data.
        data_roles: per task, which images each step read (``config.json``'s "data").
        evolution: the winner and the best seed as validation chose them (None: not re-scored).

    Example:
        >>> import tempfile
        >>> from prunevo import EvolutionConfig, Execution, evolve
        >>> config = EvolutionConfig(tasks=("small-vgg@digits:epochs=0",), population=4, generations=0,
        ...                          rescore_seeds=0, baseline_allocations=(), execution=Execution(n_jobs=1))
        >>> run = evolve(config, tempfile.mkdtemp() + "/run", progress=False)
        >>> run.best is run.hall_of_fame[0], run.best_classic.name in {row.name for row in run.baseline_rows}
        (True, True)
    """

    run_dir: Path
    config: EvolutionConfig
    hall_of_fame: list[Entry]
    pareto: list[Entry]
    baselines: dict[str, dict]
    log: list[dict]
    rescored: list[RescoredRow] = field(default_factory=list)
    # per task: which images each step read (``Task.roles``), as config.json records it
    data_roles: dict[str, dict[str, str]] = field(default_factory=dict)
    # the winner and the best seed as validation chose them (``rescored.json``'s "evolution"; None: not re-scored,
    # or a run from before it was measured)
    evolution: dict | None = None

    @property
    def best(self) -> Entry:
        """The run's winner: the hall of fame's first, chosen on validation data (with racing, on the mean over
        the race's draws less ``race_risk`` standard deviations); re-scoring on held-out data reports on it and
        never picks it."""
        return self.hall_of_fame[0]

    @property
    def best_seed(self) -> RescoredRow | None:
        """The re-scoring of the best seed (see ``evolve.racing``); None when not measured."""
        seed = (self.evolution or {}).get("best_seed")
        if not seed:
            return None
        kind = "seed" if seed["kind"] == "seed" else "baseline"
        return next((r for r in self.rescored if r.kind == kind and r.name == seed["name"]
                     and (kind == "seed" or r.allocation == seed["allocation"])), None)

    @property
    def winner_rescored(self) -> RescoredRow | None:
        """The re-scoring of the winner; None when the run was not re-scored."""
        return next((r for r in self.rescored if r.kind == "formula" and r.name == self.best.text), None)

    @property
    def evolution_gain(self):
        """The search's own contribution: the winner minus the best seed on held-out data, paired by re-scoring
        seed (a ``verdict.PairedDifference`` of relative accuracy), or None when not measured."""
        return evolution_gain(self.winner_rescored, self.best_seed)

    @property
    def winners_curse(self) -> dict[str, float] | None:
        """What selection on validation data promised and held-out data paid: per chosen formula (``winner``,
        ``best seed``), its mean validation fitness (over its race draws) minus its mean held-out fitness; None
        when not re-scored."""
        won = self.winner_rescored
        if won is None or won.fitness.mean is None:
            return None
        # the draws' mean, not the raced value a risk penalty lowers: what validation measured
        validation = statistics.fmean(self.best.draws) if self.best.draws else self.best.fitness
        out = {"winner": validation - won.fitness.mean}
        seed, row = (self.evolution or {}).get("best_seed"), self.best_seed
        if seed and row is not None and row.fitness.mean is not None:
            out["best seed"] = seed.get("mean", seed["validation"]) - row.fitness.mean
        return out

    @property
    def best_rescored_classic(self) -> RescoredRow | None:
        """The best classic or Torch-Pruning criterion after re-scoring."""
        return best_rescored(self.rescored, "baseline")

    @property
    def baseline_rows(self) -> list[ScoreRow]:
        """Every classic criterion, Torch-Pruning importance and random, with n/a and invalid ones marked."""
        return baselines_from_json(self.baselines)

    @property
    def best_classic(self) -> ScoreRow | None:
        """The best classic or Torch-Pruning criterion that applies to every task of the run."""
        return best_classic(self.baseline_rows)


def saved_config(run_dir: Path) -> EvolutionConfig:
    """The config a run directory was started with.  Raises RunError when it has none or it is unreadable."""
    return EvolutionConfig.from_json(rundir.read_json(Path(run_dir) / "config.json", "config"))


def load_run(run_dir: str | Path) -> RunResult:
    """A finished or interrupted run, read back from its directory (``prunevo show RUN``).

    Args:
        run_dir: a directory ``evolve`` wrote.

    Returns:
        The run as ``evolve`` returned it, up to its last completed generation.

    Raises:
        RunError: not a run directory, nothing evaluated yet, or malformed files.

    Example:
        >>> import tempfile
        >>> from prunevo import EvolutionConfig, Execution, evolve, load_run
        >>> config = EvolutionConfig(tasks=("small-vgg@digits:epochs=0",), population=4, generations=0,
        ...                          rescore_seeds=0, baseline_allocations=(), execution=Execution(n_jobs=1))
        >>> run_dir = evolve(config, tempfile.mkdtemp() + "/run", progress=False).run_dir
        >>> load_run(run_dir).config == config
        True
    """
    run_dir = Path(run_dir)
    saved = rundir.read_json(run_dir / "config.json", "config")
    config = EvolutionConfig.from_json(saved)
    state = Checkpoint.read(run_dir, hall_of_fame_size=config.hall_of_fame_size)
    try:
        rescored = [RescoredRow.from_json(r) for r in (state.rescored or {}).get("rows", [])]
        evolution = (state.rescored or {}).get("evolution")
    except (TypeError, KeyError) as exc:
        raise RunError(f"{run_dir / 'checkpoint.json'} is corrupt: {exc}") from None
    if not state.hall_of_fame.entries:
        raise RunError(f"{run_dir} has no evaluated formulas yet")
    roles = saved.get("data") if isinstance(saved.get("data"), dict) else {}
    return RunResult(run_dir, config, state.hall_of_fame.entries, state.pareto.front, state.baselines, state.log,
                     rescored, roles, evolution)
