"""What a criterion scores: one network, its channel groups and one class-stratified calibration batch.

The grammar's operands (``stats``) and anything else a criterion derives from the network (Torch-Pruning
importances, which need the module itself and sometimes gradients) are computed on first use and kept,
so every criterion scored on the same calibration shares them and a criterion pays only for what it reads.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable, Iterator

import torch
from torch import nn

from prunevo.primitives.accumulators import boundaries, reads_gradients
from prunevo.primitives.formula import Formula
from prunevo.primitives.operands import LayerStats
from prunevo.pruning.cost import MacsEstimator
from prunevo.pruning.groups import ChannelGroup
from prunevo.pruning.statistics import gather_stats, needed_level
from prunevo.pruning.streamed import Reductions, stream_reductions
from prunevo.utils import probe


def feature_bytes(model: nn.Module, groups: list[ChannelGroup], example: torch.Tensor) -> int:
    """Bytes one calibration image's feature maps and their gradients take when a whole batch is kept (float32
    ``F`` and ``G`` of every member layer): what decides whether a calibration must stream (``batch_size``)."""
    modules = dict(model.named_modules())
    hooked = {m.bn or m.layer: modules[m.bn or m.layer] for g in groups for m in g.members}
    sizes: dict[str, int] = {}
    probe(model, example[:1], hooked, lambda name, _inputs, output: sizes.__setitem__(name, output[0].numel()))
    return 2 * 4 * sum(sizes.values())


class Calibration:
    """``model`` with ``groups`` on the batch ``x``, ``y`` (kept on the CPU); work runs on ``device``.

    ``consumers``: also gather statistics of the layers that read each group (Domino-io).
    ``batch_size``: stream the batch through the network in chunks of this many images and reduce feature
    maps and gradients as they go (memory bounded by one chunk, see ``streamed``); None keeps the whole
    batch's feature maps, which evolution's small tasks reuse across thousands of formulas.
    ``progress``: a streamed pass shows its chunks (``prunevo.progress``: a bar, or plain lines in a log).
    """

    def __init__(self, model: nn.Module, groups: list[ChannelGroup], x: torch.Tensor, y: torch.Tensor,
                 num_classes: int, consumers: bool = False, device: str = "cpu", batch_size: int | None = None,
                 progress: bool = False):
        self.model = model
        self.groups = groups
        self.x = x
        self.y = y
        self.num_classes = num_classes
        self.consumers = consumers
        self.device = device
        self.batch_size = batch_size
        self.progress = progress
        self._memo: dict[Any, Any] = {}
        self._reductions = Reductions()

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
        """``stats[g][m]``: every operand of member ``m`` of group ``g`` (see ``gather_stats``), ``macs`` included."""
        return self._with_macs(self.stats_at("gradients"))

    def stats_for_formula(self, formula: Formula) -> list[list[LayerStats]]:
        """What ``formula`` reads, from the cheapest pass that computes it (a weight-only formula runs no
        calibration pass, an activation-only one no backward pass); with ``batch_size``, statistics whose
        feature-map reductions were streamed (each reduction is computed once per calibration and shared by
        every formula that contains it)."""
        level = needed_level(formula.operands)
        if self.batch_size is None or level == "weights":
            return self._with_macs(self.stats_at(level), "macs" in formula.operands)
        nodes = boundaries(formula.tree)
        todo = [n for n in nodes if n not in self._reductions.nodes]
        if todo:
            with self.on_device() as (model, x, y):
                new = stream_reductions(model, self.groups, x, y, self.num_classes, todo, self.batch_size,
                                        progress=self.progress)
            self._reductions.values.update(new.values)
            self._reductions.nodes.update(todo)
            if any(reads_gradients(n) for n in todo):
                self._reductions.no_gradient |= new.no_gradient
        stats = self.memo("streamed", self._streamed_stats)
        reads_g = any(reads_gradients(n) for n in nodes)
        for group, members in zip(self.groups, stats):
            for i, s in enumerate(members):
                # a consumer entry (Domino-io) reads its producer's feature maps
                layer = group.members[i if i < len(group.members) else 0].layer
                for node in nodes:
                    s.vectors[node] = self._reductions.values[(layer, node)]
                if reads_g and layer in self._reductions.no_gradient:
                    s.missing = s.missing | {"G"}
        return self._with_macs(stats, "macs" in formula.operands)

    def _with_macs(self, stats: list[list[LayerStats]], needed: bool = True) -> list[list[LayerStats]]:
        """``stats`` with the ``macs`` operand set when ``needed`` (counting costs a forward pass, which a
        weight-only criterion otherwise never runs)."""
        if needed:
            for members, cost in zip(stats, self.channel_macs):
                for s in members:
                    if s.macs is None:
                        s.macs = torch.full((s.channels,), cost, dtype=s.W.dtype, device=s.W.device)
        return stats

    def _streamed_stats(self) -> list[list[LayerStats]]:
        """Weights, next-layer weights and BatchNorm parameters of every member (and consumer), with empty
        ``F`` and ``G``: their reductions are filled in per formula."""
        stats = self.stats_at("weights")
        return [[replace(s, F=s.F[:, :0], G=s.G[:, :0], streamed=True) for s in members] for members in stats]

    def stats_at(self, level: str) -> list[list[LayerStats]]:
        def gather():
            with self.on_device() as (model, x, y):
                return gather_stats(model, self.groups, x, y, self.num_classes, consumers=self.consumers, level=level)
        return self.memo(("stats", level), gather)

    @property
    def channel_macs(self) -> list[float]:
        """Per group, the MACs one of its channels costs in the unpruned network (what removing it saves, from
        the conv/linear estimate), divided by the mean over groups: the ``macs`` operand."""
        def compute():
            estimator = MacsEstimator(self.model, self.groups, self.x[:1])
            saved = []
            for g, group in enumerate(self.groups):
                keep = [torch.ones(other.size, dtype=torch.bool) for other in self.groups]
                keep[g][0] = False
                saved.append(float(estimator.full - estimator.estimate(keep)))
            mean = sum(saved) / max(1, len(saved))
            return [s / mean if mean > 0 else 1.0 for s in saved]
        return self.memo("channel_macs", compute)

    @property
    def example_input(self) -> torch.Tensor:
        return self.x[:1]
