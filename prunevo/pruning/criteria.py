"""Criteria as scorers of channel groups: any ``Formula``, or the ``random`` baseline.

A criterion whose scores cannot rank channels (NaN, inf, constant or mostly tied within a layer) is
reported with the reason instead of being used; fitness turns that into the worst score.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from prunevo.errors import FormulaError
from prunevo.primitives.classic import CLASSIC_TEXT
from prunevo.primitives.formula import Formula
from prunevo.primitives.operands import LayerStats
from prunevo.pruning.groups import ChannelGroup
from prunevo.pruning.selection import reduce_members

RANDOM = "random"


class InvalidScores(Exception):
    """Scores that cannot rank channels; ``str(exc)`` is the reason."""


@dataclass(frozen=True)
class RandomCriterion:
    """Uniform random scores, drawn from ``seed``: the baseline every criterion must beat."""

    seed: int = 0
    name: str = RANDOM

    def group_scores(self, stats: list[list[LayerStats]], reduction: str, strict: bool = True) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed)
        return [torch.rand(members[0].channels, generator=gen) for members in stats]

    def layer_scores(self, stats: list[list[LayerStats]], groups: list[ChannelGroup]) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed)
        return {m.layer: torch.rand(s.channels, generator=gen)
                for members, g in zip(stats, groups) for s, m in zip(members, g.members)}


@dataclass(frozen=True)
class FormulaCriterion:
    formula: Formula

    @property
    def name(self) -> str:
        return self.formula.name or self.formula.text

    def group_scores(self, stats: list[list[LayerStats]], reduction: str, strict: bool = True) -> list[torch.Tensor]:
        """One score per channel of every group; ``strict`` also rejects constant or mostly tied scores."""
        scores = []
        for g, members in enumerate(stats):
            per_member = [self.formula.score(s).double() for s in members]
            for s in per_member:
                if not torch.isfinite(s).all():
                    raise InvalidScores(f"non-finite scores in group {g}")
            group = reduce_members(per_member, reduction)
            if strict:
                check_rankable(group, g)
            scores.append(group)
        return scores

    def layer_scores(self, stats: list[list[LayerStats]], groups: list[ChannelGroup]) -> dict[str, torch.Tensor]:
        """The filter scores of every producing layer, by layer name (for layer pruning)."""
        out = {}
        for members, g in zip(stats, groups):
            for s, m in zip(members, g.members):
                score = self.formula.score(s).double()
                if not torch.isfinite(score).all():
                    raise InvalidScores(f"non-finite scores in layer {m.layer!r}")
                out[m.layer] = score
        return out


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


def check_rankable(scores: torch.Tensor, group_index: int) -> None:
    problem = rank_problem(scores, group_index)
    if problem is not None:
        raise InvalidScores(problem)


Criterion = RandomCriterion | FormulaCriterion


def as_criterion(spec: "str | Formula | Criterion", seed: int = 0) -> Criterion:
    """A criterion from a classic name, ``random``, formula text, or a Formula."""
    if isinstance(spec, (RandomCriterion, FormulaCriterion)):
        return spec
    if isinstance(spec, Formula):
        return FormulaCriterion(spec)
    if spec == RANDOM:
        return RandomCriterion(seed)
    if spec in CLASSIC_TEXT:
        return FormulaCriterion(Formula.parse(CLASSIC_TEXT[spec], name=spec))
    try:
        return FormulaCriterion(Formula.parse(spec))
    except FormulaError as exc:
        raise FormulaError(f"{exc} (or use a classic criterion: {', '.join(CLASSIC_TEXT)}, random)") from None
