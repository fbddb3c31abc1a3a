"""How many channels each group keeps: a uniform ratio, a global ranking, or a searched random configuration.

*Revisiting Random Channel Pruning* (Li et al., 2022) samples per-layer keep ratios, rescales each
sample to the budget and keeps the configuration whose pruned network scores best after BatchNorm
recalibration.  Here a configuration is a vector of per-group keep ratios ``k``; ``scale * k`` (clipped
to the per-group bounds) is what each group keeps, and one scalar -- the *pruning amount* ``t`` in
[0, 1), with ``scale = (1 - t) / min(k)`` -- moves every configuration from "keep all" (t = 0) to
"keep the minimum" (t -> 1), so the same MACs-target search serves every allocation.  Within a group
the criterion's lowest-scored channels go, whatever the allocation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import torch

from prunevo.errors import PrunevoError
from prunevo.pruning.ranking import PruneSpec, Ties, fold, max_removed, remove_lowest, round_kept, select, unfold

ALLOCATIONS = ("uniform", "global", "random-search")
RANKING_OF = {"uniform": "layerwise", "global": "global"}  # allocation -> PruneSpec.ranking

MasksAt = Callable[[float], list[torch.Tensor]]


@dataclass(frozen=True)
class SearchSpec:
    """Random configuration search (the ``random-search`` allocation, after EagleEye, Li et al., ECCV 2020).

    Attributes:
        candidates: sampled width configurations at the target.
        samples: held-out images each candidate is scored on after BatchNorm re-estimation.
        finetune_epochs: training of each candidate before it is scored (0: none).

    Raises:
        PrunevoError: a value outside its range.

    Example:
        >>> from prunevo import SearchSpec
        >>> SearchSpec(candidates=0)
        Traceback (most recent call last):
        ...
        prunevo.errors.PrunevoError: search candidates must be >= 1, got 0
    """

    candidates: int = 16
    samples: int = 1024
    finetune_epochs: float = 0.0

    def __post_init__(self) -> None:
        if self.candidates < 1:
            raise PrunevoError(f"search candidates must be >= 1, got {self.candidates}")
        if self.samples < 2:
            raise PrunevoError(f"search samples must be >= 2, got {self.samples}")
        if self.finetune_epochs < 0:
            raise PrunevoError(f"search fine-tune epochs must be >= 0, got {self.finetune_epochs}")


def check_allocation(allocation: str) -> None:
    if allocation not in ALLOCATIONS:
        raise PrunevoError(f"unknown allocation {allocation!r}; allowed: {', '.join(ALLOCATIONS)}")


def min_keep(size: int, spec: PruneSpec) -> int:
    """Fewest channels a group may keep: the same per-layer cap as global ranking."""
    return size - max_removed(size, spec.max_layer_ratio)


def sample_configurations(sizes: list[int], count: int, seed: int, spec: PruneSpec) -> list[torch.Tensor]:
    """``count`` configurations of per-group keep ratios, uniform in [min keep share, 1], from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.tensor([min_keep(n, spec) / n for n in sizes], dtype=torch.float64)
    return [low + (1 - low) * torch.rand(len(sizes), generator=gen, dtype=torch.float64) for _ in range(count)]


def configuration_counts(sizes: list[int], config: torch.Tensor, amount: float, spec: PruneSpec) -> list[int]:
    """Channels each group keeps under ``config`` at pruning amount ``amount`` (0 = keep everything)."""
    scale = (1.0 - amount) / float(config.min())
    return [max(min_keep(n, spec), min(n, round(scale * float(k) * n))) for n, k in zip(sizes, config)]


def configuration_masks(scores: list[torch.Tensor], config: torch.Tensor, amount: float,
                        spec: PruneSpec) -> list[torch.Tensor]:
    sizes = [len(s) for s in scores]
    counts = configuration_counts(sizes, config, amount, spec)
    return [remove_lowest(s, n - c) for s, n, c in zip(scores, sizes, counts)]


def masks_along(scores: list[torch.Tensor], spec: PruneSpec, config: torch.Tensor | None = None,
                round_to: int = 1, ties: Ties | None = None) -> MasksAt:
    """Keep-masks as a function of the pruning amount: the channel ratio for uniform and global
    ranking, the rescaling of ``config`` for a sampled configuration.  More amount, fewer MACs.
    ``round_to`` rounds every pruned group's width down to a multiple (``ranking.round_kept``).
    ``ties`` (``ChannelGroup.ties``): groups around a grouped convolution lose the same positions in every
    slice, so their channels are selected per position (scores averaged over the slices)."""
    folded = fold(scores, ties)
    steps = [round_to if not ties or ties[g] is None else round_to // math.gcd(round_to, len(ties[g]) // len(f))
             for g, f in enumerate(folded)]
    if config is None:
        return lambda amount: unfold(round_kept(select(folded, replace(spec, ratio=amount)), folded, steps), ties)
    return lambda amount: unfold(round_kept(configuration_masks(folded, config, amount, spec), folded, steps), ties)
