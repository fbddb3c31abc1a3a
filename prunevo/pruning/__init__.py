"""Mechanics shared by fitness and transfer: groups, statistics, criteria, ranking, masks, physical removal."""
from prunevo.pruning.calibration import Calibration
from prunevo.pruning.criteria import (
                                      Criterion,
                                      FormulaCriterion,
                                      RandomCriterion,
                                      TorchPruningCriterion,
                                      as_criterion,
                                      score_groups,
)
from prunevo.pruning.groups import ChannelGroup, find_groups
from prunevo.pruning.masks import apply_masks
from prunevo.pruning.physical import prune_model
from prunevo.pruning.ranking import PruneSpec, select
from prunevo.pruning.statistics import gather_stats
from prunevo.zoo.stratify import stratified_batch  # public here: a calibration batch for gather_stats

__all__ = ["Calibration", "ChannelGroup", "Criterion", "FormulaCriterion", "PruneSpec", "RandomCriterion",
           "TorchPruningCriterion", "apply_masks", "as_criterion", "find_groups", "gather_stats", "prune_model",
           "score_groups", "select", "stratified_batch"]
