"""From group scores to keep-masks: channels ranked within each group (``ranking="layerwise"``, a uniform ratio)
or across all groups (``ranking="global"``, with a per-layer cap; Torch-Pruning's ``global_pruning``).

``select`` returns the keep-masks; ``masks_key`` hashes them (a *selection*: what a criterion selects).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch

from prunevo.errors import PrunevoError

RANKINGS = ("layerwise", "global")
REDUCTIONS = ("mean", "sum", "max")
DOMINO = ("o", "io")


@dataclass(frozen=True)
class PruneSpec:
    """What to remove: ``ratio`` of the prunable channels, ranked layer by layer or globally (``ranking``)."""

    ratio: float = 0.5
    ranking: str = "layerwise"
    max_layer_ratio: float = 0.9  # no allocation removes more than this share of one group
    group_reduction: str = "mean"  # how the scores of coupled layers combine (Domino)
    # Domino-o: the coupled layers' output-channel scores; Domino-io: plus the consumers' input-channel scores
    domino: str = "o"

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise PrunevoError(f"prune ratio {self.ratio} is out of range; allowed: 0 <= ratio < 1")
        if self.ranking not in RANKINGS:
            raise PrunevoError(f"unknown ranking {self.ranking!r}; allowed: {', '.join(RANKINGS)}")
        if self.group_reduction not in REDUCTIONS:
            raise PrunevoError(f"unknown group reduction {self.group_reduction!r}; allowed: {', '.join(REDUCTIONS)}")
        if self.domino not in DOMINO:
            raise PrunevoError(f"unknown Domino variant {self.domino!r}; allowed: {', '.join(DOMINO)}")
        if not 0.0 < self.max_layer_ratio < 1.0:
            raise PrunevoError(f"{{param:max_layer_ratio}} {self.max_layer_ratio} is out of range; allowed: 0 < r < 1")


def reduce_members(member_scores: list[torch.Tensor], reduction: str) -> torch.Tensor:
    stacked = torch.stack(member_scores)
    if reduction == "mean":
        return stacked.mean(0)
    if reduction == "sum":
        return stacked.sum(0)
    return stacked.amax(0)


def remove_lowest(scores: torch.Tensor, count: int) -> torch.Tensor:
    keep = torch.ones(len(scores), dtype=torch.bool)
    # stable sort: ties are broken by channel index, the same in every process
    order = torch.argsort(scores, stable=True)
    keep[order[:count]] = False
    return keep


def max_removed(size: int, max_layer_ratio: float) -> int:
    """Most channels one group of ``size`` may lose: ``max_layer_ratio`` of it, and never all."""
    return min(int(max_layer_ratio * size), size - 1)


def layerwise_counts(sizes: list[int], ratio: float, max_layer_ratio: float = 1.0) -> list[int]:
    """Channels to remove per group: ``ratio`` of each, rounded to the nearest channel, at most
    ``max_layer_ratio`` of a group (and never all of it).

    Group g loses its k-th channel once the ratio passes (k - 1/2) / n_g (Webster's rounding of
    ratio * n_g), nudged by g * 1e-6 (far above the MACs search's 2^-30 steps) so that no two groups step
    at the same ratio.  So each group stays within half a channel of the uniform ratio, no group ever keeps
    more channels at a higher ratio (largest-remainder apportionment can give a group back a channel as the
    total grows: the Alabama paradox, which made a MACs target unreachable between two ratios), and the
    total moves one channel at a time, fine enough to meet a MACs target.
    """
    counts = []
    for g, n in enumerate(sizes):
        removed = math.ceil((ratio - g * 1e-6) * n + 0.5) - 1  # the k with (k - 1/2) / n + g * 1e-6 < ratio
        counts.append(min(max(0, removed), n, max_removed(n, max_layer_ratio)))
    return counts


def select(scores: list[torch.Tensor], spec: PruneSpec) -> list[torch.Tensor]:
    """Boolean keep-masks, one per group."""
    if spec.ranking == "layerwise":
        counts = layerwise_counts([len(s) for s in scores], spec.ratio, spec.max_layer_ratio)
        return [remove_lowest(s, c) for s, c in zip(scores, counts)]
    sizes = [len(s) for s in scores]
    caps = [max_removed(n, spec.max_layer_ratio) for n in sizes]
    budget = int(spec.ratio * sum(sizes))
    flat = torch.cat(scores)
    owner = torch.cat([torch.full((n,), g) for g, n in enumerate(sizes)])
    local = torch.cat([torch.arange(n) for n in sizes])
    keep = [torch.ones(n, dtype=torch.bool) for n in sizes]
    removed = [0] * len(sizes)
    for pos in torch.argsort(flat, stable=True).tolist():
        if budget == 0:
            break
        g = int(owner[pos])
        if removed[g] < caps[g]:
            keep[g][local[pos]] = False
            removed[g] += 1
            budget -= 1
    return keep


Ties = list[torch.Tensor | None]  # per group: each channel's position in its grouped convolution's slice, or None


def fold(scores: list[torch.Tensor], ties: Ties | None) -> list[torch.Tensor]:
    """Scores per *position* for groups tied by a grouped convolution (``ChannelGroup.ties``): the mean over
    the positions' channels, one per slice.  Untied groups pass through."""
    if not ties:
        return scores
    out = []
    for score, tie in zip(scores, ties):
        if tie is None:
            out.append(score)
            continue
        positions = int(tie.max()) + 1
        total = torch.zeros(positions, dtype=score.dtype).index_add_(0, tie, score)
        out.append(total / torch.bincount(tie, minlength=positions).to(score.dtype))
    return out


def unfold(keep: list[torch.Tensor], ties: Ties | None) -> list[torch.Tensor]:
    """Masks per position back to masks per channel: a position kept or removed in every slice together."""
    if not ties:
        return keep
    return [mask if tie is None else mask[tie] for mask, tie in zip(keep, ties)]


def round_kept(keep: list[torch.Tensor], scores: list[torch.Tensor], round_to: int | list[int]) -> list[torch.Tensor]:
    """Torch-Pruning's ``round_to``: every group that loses channels keeps a multiple of ``round_to`` of them,
    rounded down (the next-lowest-scoring kept channels go too), and never fewer than ``round_to`` (Torch-
    Pruning would leave none); a group left whole stays whole.  Hardware kernels (tensor cores, SIMD
    lanes) run fastest on such widths."""
    steps = round_to if isinstance(round_to, list) else [round_to] * len(keep)
    if max(steps, default=1) <= 1:
        return keep
    out = []
    for mask, score, round_to in zip(keep, scores, steps):
        kept = int(mask.sum())
        if kept == len(mask) or round_to <= 1:
            out.append(mask)
            continue
        target = min(len(mask), max(round_to, kept - kept % round_to))
        order = torch.argsort(torch.where(mask, score, torch.full_like(score, float("-inf"))), descending=True,
                              stable=True)
        rounded = torch.zeros_like(mask)
        rounded[order[:target]] = True
        out.append(rounded)
    return out


def masks_key(keep: list[torch.Tensor]) -> str:
    """Identity of a selection (the keep-masks a criterion selects): identical masks => identical fitness."""
    h = hashlib.sha256()
    for k in keep:
        h.update(len(k).to_bytes(4, "little"))
        h.update(k.to(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]
