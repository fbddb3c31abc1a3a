"""The GP engine and runs: config, checkpoints, hall of fame, Pareto front."""
from prunevo.evolve.run import evolve
from prunevo.runs.config import EvolutionConfig, TaskOverrides
from prunevo.runs.result import RunResult, load_run

__all__ = ["EvolutionConfig", "RunResult", "TaskOverrides", "evolve", "load_run"]
