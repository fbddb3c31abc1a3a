"""What a criterion scores: one network, its channel groups and one class-stratified calibration batch.

The grammar's operands (``stats``) and anything else a criterion derives from the network (Torch-Pruning
importances, which need the module itself and sometimes gradients) are computed on first use and kept,
so every criterion scored on the same calibration shares them and a criterion pays only for what it reads.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from torch import nn

from prunevo.primitives.operands import LayerStats
from prunevo.pruning.groups import ChannelGroup
from prunevo.pruning.statistics import gather_stats, needed_level


class Calibration:
    """``model`` with ``groups`` on the batch ``x``, ``y`` (kept on the CPU); work runs on ``device``.

    ``consumers``: also gather statistics of the layers that read each group (Domino-io).
    """

    def __init__(self, model: nn.Module, groups: list[ChannelGroup], x: torch.Tensor, y: torch.Tensor,
                 num_classes: int, consumers: bool = False, device: str = "cpu"):
        self.model = model
        self.groups = groups
        self.x = x
        self.y = y
        self.num_classes = num_classes
        self.consumers = consumers
        self.device = device
        self._memo: dict[Any, Any] = {}

    @contextmanager
    def on_device(self) -> Iterator[tuple[nn.Module, torch.Tensor, torch.Tensor]]:
        """(model, x, y) on ``device``; the model goes back to where it was afterwards."""
        home = next(self.model.parameters()).device
        try:
            yield self.model.to(self.device), self.x.to(self.device), self.y.to(self.device)
        finally:
            self.model.to(home)

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per ``key`` for this calibration."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def stats(self) -> list[list[LayerStats]]:
        """``stats[g][m]``: every operand of member ``m`` of group ``g`` (see ``gather_stats``)."""
        return self.stats_at("gradients")

    def stats_for(self, operands: frozenset[str]) -> list[list[LayerStats]]:
        """Statistics that hold ``operands``, from the cheapest pass that computes them: a weight-only
        criterion runs no calibration pass, an activation-only one no backward pass."""
        return self.stats_at(needed_level(operands))

    def stats_at(self, level: str) -> list[list[LayerStats]]:
        def gather():
            with self.on_device() as (model, x, y):
                return gather_stats(model, self.groups, x, y, self.num_classes, consumers=self.consumers, level=level)
        return self.memo(("stats", level), gather)

    @property
    def example_input(self) -> torch.Tensor:
        return self.x[:1]
