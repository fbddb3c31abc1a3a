"""prunevo: discover channel-pruning criteria by genetic programming, and apply them to new models.

The Python API mirrors the command line::

    from prunevo import EvolutionConfig, evolve, load_run, Formula, score_formulas
    from prunevo import TrainConfig, train_base, TransferConfig, apply_formula, compare_criteria, load_pruned
"""
from importlib import metadata as _metadata

from prunevo.errors import DataError, FormulaError, ModelError, PrunevoError, RunError
from prunevo.evolve.config import EvolutionConfig
from prunevo.evolve.run import RunResult, evolve, load_run
from prunevo.fitness.evaluator import Evaluator, FitnessResult
from prunevo.fitness.scoring import ScoreRow, best_classic, score_criteria
from prunevo.fitness.task_spec import DEFAULT_TASKS, TaskOverrides, available_tasks, make_task, parse_task
from prunevo.fitness.tasks import Task, prepare_task
from prunevo.primitives import CLASSIC_TEXT, Formula, LayerStats, classic_formula, classic_formulas
from prunevo.primitives.export import FORMATS, export_formula, read_formula
from prunevo.pruning.allocation import SearchSpec
from prunevo.pruning.criteria import BASELINE_NAMES, as_criterion
from prunevo.pruning.latency import LatencySpec
from prunevo.pruning.ranking import PruneSpec
from prunevo.transfer import (ApplyResult, CompareResult, FitConfig, TrainConfig, TransferConfig, TransferSession,
                              apply_formula, compare_criteria, load_pruned, train_base)

try:  # one source: the installed package's metadata (pyproject.toml)
    __version__ = _metadata.version("prunevo")
except _metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"


def score_formulas(formulas, tasks=DEFAULT_TASKS, n_jobs: int = 1, seed: int = 0,
                   baselines: bool = True, data_root=None, cache_dir=None) -> list[ScoreRow]:
    """Score criteria (Formula objects, formula text or files, or names: ``l1``, ``tp-l2``, ``random``...) on
    named tasks beside the classic criteria, Torch-Pruning's importances and random."""
    criteria = [as_criterion(f) for f in formulas]  # bad text fails here, before any task is prepared
    prepared = [prepare_task(make_task(t) if isinstance(t, str) else t, data_root, cache_dir) for t in tasks]
    return score_criteria(criteria, prepared, n_jobs=n_jobs, seed=seed, baselines=baselines)


__all__ = [
    "BASELINE_NAMES", "as_criterion", "best_classic",
    "ApplyResult", "CompareResult", "FitConfig", "LatencySpec", "SearchSpec", "TrainConfig", "TransferConfig", "TransferSession",
    "apply_formula", "compare_criteria", "load_pruned", "train_base",
    "CLASSIC_TEXT", "DataError", "EvolutionConfig", "Evaluator", "FORMATS", "FitnessResult", "Formula", "FormulaError",
    "LayerStats", "ModelError", "PruneSpec", "PrunevoError", "RunError", "RunResult", "ScoreRow", "Task",
    "TaskOverrides", "available_tasks", "classic_formula", "classic_formulas", "evolve", "export_formula",
    "load_run", "make_task", "parse_task", "prepare_task", "read_formula", "score_criteria", "score_formulas",
]
