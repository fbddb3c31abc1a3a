"""Whether a criterion's scores can rank the channels of a group, and the two ways they cannot.

``InvalidScores``: the criterion ran but its scores are NaN, infinite, constant or mostly tied (fitness
turns that into the worst score).  ``NotApplicable``: the criterion needs something this network does
not have (BatchNorm, a gradient...), so it is reported as "n/a" and left out of comparisons instead.
"""
from __future__ import annotations

import torch


class InvalidScores(Exception):
    """Scores that cannot rank channels; ``str(exc)`` is the reason."""


class NotApplicable(InvalidScores):
    """The criterion does not apply to this network; ``str(exc)`` says what it needs and where it is missing."""


def rank_problem(scores: torch.Tensor, group_index: int) -> str | None:
    """Why ``scores`` cannot rank the channels of a group, or None when they can."""
    if not torch.isfinite(scores).all():
        return f"non-finite scores in group {group_index}"
    if len(scores) > 1 and bool((scores == scores[0]).all()):
        return f"constant scores in group {group_index}"
    distinct = len(torch.unique(scores))
    if distinct * 2 < len(scores):
        return f"tied scores in group {group_index} ({distinct} distinct values for {len(scores)} channels)"
    return None

