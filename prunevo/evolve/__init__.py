"""The GP engine and runs: config, checkpoints, hall of fame, Pareto front."""
from prunevo.evolve.config import EvolutionConfig, TaskOverrides
from prunevo.evolve.run import RunResult, evolve, load_run

__all__ = ["EvolutionConfig", "RunResult", "TaskOverrides", "evolve", "load_run"]
