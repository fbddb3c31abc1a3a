"""Meet a MACs target: search the pruning amount whose selection leaves the wanted share of MACs.

The amount (the channel ratio for uniform/global allocation, the rescaling of a sampled configuration
otherwise; see ``allocation``) is bisected on the fast conv/linear estimate; the result is then checked on the
physically pruned copy (Torch-Pruning's count, which also counts BatchNorm, pooling...) and the estimate's target
is corrected by the measured gap until the real MACs are within tolerance.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from prunevo.errors import PrunevoError, TargetUnreachable
from prunevo.pruning.allocation import MasksAt
from prunevo.pruning.cost import MacsEstimator, measure_cost
from prunevo.pruning.groups import ChannelGroup
from prunevo.pruning.physical import prune_model

TOLERANCE = 0.03  # relative to the target share
DEFAULT_TARGET_MACS = 0.5  # share of the MACs kept when no target is given (apply, compare, evolve --model)
MAX_RATIO = 0.99


@dataclass(frozen=True)
class KeepMasks:
    """Keep-masks chosen for a model (one per group), and how they were reached: what ``TransferSession.select``
    returns and the strategies prune with."""

    keep: list[torch.Tensor]
    ratio: float  # the channel ratio, or the pruning amount that met the target
    macs_fraction: float = float("nan")  # measured MACs of the pruned net / the original's; NaN without a target
    pruned: nn.Module | None = None  # the physically pruned copy, when one was made and measured
    search_top1: list[float] = field(default_factory=list)  # random search: held-out top-1 of each candidate


def check_macs_target(target: float) -> None:
    if not 0.0 < target <= 1.0:
        raise PrunevoError(f"{{param:target_macs}} {target} is out of range; allowed: 0 < target <= 1 "
                           f"(the share of the original MACs that remains)")


def bisect_amount(masks_at: MasksAt, estimator: MacsEstimator, wanted: float, iterations: int = 30) -> float:
    """The smallest pruning amount whose estimated MACs fraction is at most ``wanted`` (within 2^-30)."""
    lo, hi = 0.0, MAX_RATIO
    if estimator.fraction(masks_at(hi)) > wanted:
        return hi  # the per-layer caps stop short of the target: prune as far as allowed
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if estimator.fraction(masks_at(mid)) > wanted:
            lo = mid
        else:
            hi = mid
    return hi


def meet_macs_target(model: nn.Module, groups: list[ChannelGroup], masks_at: MasksAt, target: float,
                     example_input: torch.Tensor, rounds: int = 4, estimator: MacsEstimator | None = None,
                     full_macs: int | None = None, allocation: str = "uniform",
                     max_layer_ratio: float | None = None, left_whole: tuple[str, ...] = ()) -> KeepMasks:
    """Keep-masks whose pruned network has ``target`` x the MACs of ``model`` (within 3%).

    ``masks_at`` maps a pruning amount to keep-masks (``allocation.masks_along``); ``estimator`` and
    ``full_macs`` (the unpruned count) may be passed in when pruning one model many times; ``allocation``
    and ``max_layer_ratio`` (the per-group cap ``masks_at`` obeys) only shape the error's advice, as does
    ``left_whole`` (the root layers of groups that are not pruned, ``pruning.prunable``: their MACs stay).
    Raises TargetUnreachable when no amount comes within 3% of the target.
    """
    check_macs_target(target)
    estimator = estimator or MacsEstimator(model, groups, example_input)
    full = full_macs or measure_cost(model, example_input).macs
    wanted, best = target, None
    for _ in range(rounds):
        ratio = bisect_amount(masks_at, estimator, wanted)
        keep = masks_at(ratio)
        pruned = prune_model(copy.deepcopy(model), groups, keep, example_input)
        measured = measure_cost(pruned, example_input, doing="running the pruned version of").macs / full
        if best is None or abs(measured - target) < abs(best.macs_fraction - target):
            best = KeepMasks(keep, ratio, measured, pruned)
        if abs(measured - target) <= TOLERANCE * target / 3 or ratio >= MAX_RATIO:
            break
        wanted = max(1e-4, wanted + (target - measured))
    if abs(best.macs_fraction - target) > TOLERANCE * target:
        raise TargetUnreachable(f"cannot reach {target:.0%} of the MACs with {allocation} allocation (closest: "
                                f"{best.macs_fraction:.1%}); " + _advice(best.macs_fraction > target, allocation,
                                                                        max_layer_ratio)
                                + _fixed(left_whole, best.macs_fraction > target))
    return best


def _fixed(left_whole: tuple[str, ...], too_many_macs: bool) -> str:
    if not left_whole or not too_many_macs:
        return ""
    many = len(left_whole) > 1
    return (f"; {len(left_whole)} channel group{'s are' if many else ' is'} left whole and keep"
            f"{'' if many else 's'} {'their' if many else 'its'} MACs (layer {', '.join(map(repr, left_whole[:3]))}"
            f"{' ...' if len(left_whole) > 3 else ''}: see the note above)")


def _advice(too_many_macs: bool, allocation: str, max_layer_ratio: float | None) -> str:
    """What to change, true for the situation: the cap binds when pruning cannot go further; a target just
    below the full model is finer than one channel's step."""
    if not too_many_macs:
        return ("one channel per group is already more than the difference: allowed: a smaller "
                "{param:target_macs}, or {param:round_to=1} when rounding is on")
    cap = (f"a larger {{param:max_layer_ratio}} (now {max_layer_ratio:g}: no group loses more than this share)"
           if max_layer_ratio is not None else "a larger {param:max_layer_ratio}")
    if allocation == "uniform":
        return f"allowed: {{param:allocation=global}} (it prunes unequally), or {cap}"
    return f"allowed: {cap}, or a larger {{param:target_macs}}"
