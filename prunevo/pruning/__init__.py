"""Mechanics shared by fitness and transfer: groups, statistics, selection, masks, physical removal."""
from prunevo.pruning.criteria import FormulaCriterion, RandomCriterion, as_criterion
from prunevo.pruning.groups import ChannelGroup, find_groups
from prunevo.pruning.masks import apply_masks
from prunevo.pruning.physical import prune_model
from prunevo.pruning.selection import PruneSpec, select
from prunevo.pruning.statistics import gather_stats, stratified_batch

__all__ = ["ChannelGroup", "FormulaCriterion", "PruneSpec", "RandomCriterion", "apply_masks", "as_criterion",
           "find_groups", "gather_stats", "prune_model", "select", "stratified_batch"]
