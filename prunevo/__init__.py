"""prunevo: discover channel-pruning criteria by genetic programming, and apply them to new models.

The public API mirrors the command line::

    from prunevo import EvolutionConfig, evolve, load_run, Formula, score_formulas
    from prunevo import TrainConfig, train_base, TransferConfig, apply_formula, compare_criteria, load_pruned

- search for your network: ``task_for(model, dataset, checkpoint=..., target_macs=...)`` is the fitness task
  of ``prunevo evolve --model``; ``TransferConfig.from_run(run_dir)`` the setting that ``prunevo apply
  RUN_DIR`` prunes with the run's winner;
- evolve criteria: ``evolve(EvolutionConfig, run_dir) -> RunResult``, ``load_run(run_dir) -> RunResult``
  (an ``EvolutionConfig`` is a ``FitnessConfig`` plus the genetic programming: its ``overrides`` are a
  ``TaskOverrides``, its ``execution`` an ``Execution``: workers, backend, device, batching);
- score criteria on fitness tasks: ``score_formulas(criteria, FitnessConfig) -> list[ScoreRow]``;
- train a base model: ``train_base(TrainConfig) -> TrainResult``;
- prune it: ``apply_formula(criterion, TransferConfig) -> (model, ApplyResult)``,
  ``compare_criteria(criteria, TransferConfig) -> CompareResult``, ``load_pruned(path) -> model``
  (both configs hold the model and data as a ``Setup`` and the device as an ``Accelerator``;
  ``TransferConfig`` also a ``FitConfig``, a ``SearchSpec`` and a ``LatencySpec``);
- criteria: names (``l1``, ``tp-l2``, ``random``...), formula text or files, ``Formula`` objects, or any
  object that follows the ``Criterion`` protocol (a ``name`` and ``group_scores(calibration, reduction)``);
- errors: every error a user can cause is a ``PrunevoError`` (``FormulaError``, ``DataError``,
  ``ModelError``, ``RunError``, ``TargetUnreachable``, ``NotApplicableError``).

Everything else (tasks, evaluators, exports, Torch-Pruning names...) is importable from its module:
``prunevo.fitness.task_spec.make_task``, ``prunevo.primitives.export.export_formula``,
``prunevo.pruning.criteria.as_criterion``...
"""
from importlib import metadata as _metadata

from prunevo.errors import (
    DataError,
    FormulaError,
    ModelError,
    NotApplicableError,
    PrunevoError,
    RunError,
    TargetUnreachable,
)
from prunevo.evolve.run import evolve
from prunevo.fitness.config import FitnessConfig
from prunevo.fitness.execution import Execution
from prunevo.fitness.scoring import ScoreRow, score_formulas
from prunevo.fitness.task_spec import task_for
from prunevo.primitives.formula import Formula
from prunevo.pruning.allocation import SearchSpec
from prunevo.pruning.criteria import Criterion
from prunevo.pruning.latency import LatencySpec
from prunevo.runs.config import EvolutionConfig, TaskOverrides
from prunevo.runs.result import RunResult, load_run
from prunevo.training import Accelerator
from prunevo.transfer import (
    ApplyResult,
    CompareResult,
    FitConfig,
    TrainConfig,
    TrainResult,
    TransferConfig,
    apply_formula,
    compare_criteria,
    load_pruned,
    train_base,
)
from prunevo.transfer.setup import Setup

try:  # one source: the installed package's metadata (pyproject.toml)
    __version__ = _metadata.version("prunevo")
except _metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    # functions
    "evolve", "load_run", "score_formulas", "train_base", "apply_formula", "compare_criteria", "load_pruned",
    "task_for",
    # criteria
    "Formula", "Criterion",
    # configs
    "EvolutionConfig", "FitnessConfig", "Execution", "TaskOverrides", "TrainConfig", "TransferConfig", "Setup",
    "Accelerator", "FitConfig", "SearchSpec", "LatencySpec",
    # results
    "RunResult", "ScoreRow", "TrainResult", "ApplyResult", "CompareResult",
    # errors
    "PrunevoError", "FormulaError", "DataError", "ModelError", "RunError", "TargetUnreachable", "NotApplicableError",
]
