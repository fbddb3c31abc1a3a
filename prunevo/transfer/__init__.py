"""Apply formulas to new models and datasets, and compare them with the classic criteria and random.

    from prunevo.transfer import TransferConfig, apply_formula, compare_criteria, train_base, TrainConfig
"""
from prunevo.training import FitConfig
from prunevo.transfer.apply import apply_formula, load_pruned
from prunevo.transfer.compare import CompareResult, compare_criteria
from prunevo.transfer.config import TransferConfig
from prunevo.transfer.results import ApplyResult, Measurement
from prunevo.transfer.session import TransferSession
from prunevo.transfer.train import TrainConfig, TrainResult, train_base

__all__ = ["ApplyResult", "CompareResult", "FitConfig", "Measurement", "TrainConfig", "TrainResult", "TransferConfig",
           "TransferSession", "apply_formula", "compare_criteria", "load_pruned", "train_base"]
