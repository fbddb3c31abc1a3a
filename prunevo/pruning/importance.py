"""A Torch-Pruning ``Importance`` that scores channels with a prunevo criterion.

For users of Torch-Pruning's own pruners (``tp.pruner.MetaPruner``...): statistics are gathered once on a
calibration batch (streamed in chunks of ``calibration_batch`` images, so ImageNet-size models fit; None
passes it whole), then each TP group is scored by the formula with the group reduction of prunevo.
"""
from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from prunevo.pruning.calibration import Calibration
from prunevo.pruning.criteria import Criterion, as_criterion, score_groups
from prunevo.pruning.prunable import prunable_groups


class FormulaImportance(tp.importance.Importance):
    """``imp(group)`` -> one score per channel of the group's root convolution (higher = keep)."""

    def __init__(self, criterion, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                 reduction: str = "mean", domino: str = "o", ignored_layers: list[nn.Module] | None = None,
                 calibration_batch: int | None = 32):
        self.criterion: Criterion = as_criterion(criterion)
        groups, _ = prunable_groups(model, x[:1], ignored_layers)
        calibration = Calibration(model, groups, x, y, num_classes, domino == "io", batch_size=calibration_batch)
        scores = score_groups(self.criterion, calibration, reduction)
        modules = dict(model.named_modules())
        self._scores = {modules[g.root]: s for g, s in zip(groups, scores)}
        # every member of a group has the group's score: TP may root a group at any of them
        for g, s in zip(groups, scores):
            for member in g.members:
                self._scores.setdefault(modules[member.layer], s)

    def __call__(self, group: tp.Group) -> torch.Tensor:
        root = group[0].dep.target.module
        if root not in self._scores:
            raise KeyError(f"no prunevo scores for {root}: it is not the root of a prunable group")
        scores = self._scores[root].float()
        idxs = list(group[0].idxs)
        return scores[torch.as_tensor([int(i) for i in idxs])] if len(idxs) != len(scores) else scores
