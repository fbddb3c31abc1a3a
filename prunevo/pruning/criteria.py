"""Criteria as scorers of channel groups: any ``Formula``, Torch-Pruning's importances, ``random``, or a
user's own object that follows the ``Criterion`` protocol (like a Torch-Pruning ``Importance``).

Every criterion scores a ``Calibration`` (one network, its groups, one calibration batch) and returns one
score per channel of every group (higher = keep).  A criterion whose scores cannot rank channels raises
``InvalidScores`` with the reason; one that needs something the network lacks raises ``NotApplicable``.
Callers score through ``score_groups`` and ``score_layers``, which check what any criterion returns.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import torch

from prunevo.errors import FormulaError, PrunevoError
from prunevo.primitives.classic import CLASSIC_TEXT
from prunevo.primitives.formula import Formula
from prunevo.primitives.grammar import OPERAND_SPECS
from prunevo.pruning.calibration import Calibration
from prunevo.pruning.ranking import reduce_members
from prunevo.pruning.scores import InvalidScores, NotApplicable, rank_problem
from prunevo.pruning.tp_criteria import TP_CRITERIA, tp_group_scores

RANDOM = "random"
# the criteria users already run: "best classic" in every report is the best of these
BASELINE_NAMES: tuple[str, ...] = (*CLASSIC_TEXT, *TP_CRITERIA)


__all__ = ["BASELINE_NAMES", "Criterion", "FormulaCriterion", "InvalidScores", "NotApplicable", "RANDOM",
           "RandomCriterion", "TorchPruningCriterion", "as_baseline", "as_criterion", "criterion_names", "rank_problem",
           "score_groups", "score_layers"]


@runtime_checkable
class Criterion(Protocol):
    """Anything with a ``name`` and a ``group_scores(calibration, reduction)`` method is a criterion.

    ``group_scores`` returns one 1-D tensor per group of ``calibration.groups``, one score per channel of
    the group (``group.size``; higher = keep).  A group's channels are the output channels of every layer
    in ``group.members`` (``member.layer``: a name in ``calibration.model.named_modules()``); ``reduction``
    (mean, sum or max) is how prunevo's own criteria combine the members' scores, which a criterion may
    ignore.  ``calibration.x``/``calibration.y`` are the calibration batch.  Raise ``InvalidScores`` or
    ``NotApplicable`` (``prunevo.pruning.scores``) when the network cannot be scored.

    Optional members, read with ``getattr``, that prunevo's own criteria have:

    - ``layer_scores(calibration) -> {layer name: scores}`` for layer pruning (default: every member of a
      group gets its group's scores);
    - ``formula``: the ``Formula`` it evaluates (reports show its text, evolution remembers its masks by it);
    - ``with_seed(seed) -> Criterion``: the criterion drawn from each run's seed (``random``);
    - ``checks_scores = True``: ``group_scores`` takes a third argument ``strict`` and checks its scores
      itself (otherwise ``score_groups`` does: constant, tied or non-finite scores cannot rank channels).

    The one-method contract follows Torch-Pruning's ``Importance`` (torch_pruning/pruner/importance.py).

    Example (a criterion of your own: the L1 norm of the first member's filters):
        >>> from prunevo import FitConfig, Setup, TransferConfig, apply_formula
        >>> class FilterL1:
        ...     name = "filter-l1"
        ...     def group_scores(self, calibration, reduction):
        ...         layers = dict(calibration.model.named_modules())
        ...         return [layers[group.members[0].layer].weight.detach().abs().flatten(1).sum(1)
        ...                 for group in calibration.groups]
        >>> config = TransferConfig(setup=Setup(model="small-vgg", dataset="digits"), target_macs=0.5,
        ...                         finetune=FitConfig(epochs=0), latency=None)
        >>> _, result = apply_formula(FilterL1(), config)
        >>> result.criterion, round(result.macs_fraction, 2)
        ('filter-l1', 0.5)
    """

    name: str

    def group_scores(self, calibration: Calibration, reduction: str) -> list[torch.Tensor]:
        """One score per channel of every group.

        Args:
            calibration: the model (``calibration.model``), its channel groups (``calibration.groups``), the
                calibration batch (``calibration.x`` ``[N, C, H, W]``, ``calibration.y`` ``[N]``) and the
                per-layer statistics (``calibration.stats_for_formula``).
            reduction: ``mean``, ``sum`` or ``max``: how prunevo's own criteria combine a group's members.

        Returns:
            One 1-D tensor ``[group.size]`` per group, in ``calibration.groups``' order; higher = keep.

        Raises:
            InvalidScores: scores that cannot rank the channels (``prunevo.pruning.scores``).
            NotApplicable: the network lacks what the criterion reads (BatchNorm, a gradient...).
        """
        ...


@dataclass(frozen=True)
class RandomCriterion:
    """Uniform random scores, drawn from ``seed``: the baseline every criterion must beat."""

    seed: int = 0
    name: str = RANDOM
    checks_scores = True  # random scores always rank

    def with_seed(self, seed: int) -> "RandomCriterion":
        return self if seed == self.seed else replace(self, seed=seed)

    def group_scores(self, calibration: Calibration, reduction: str, strict: bool = True) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed)
        return [torch.rand(g.size, generator=gen) for g in calibration.groups]

    def layer_scores(self, calibration: Calibration) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed)
        return {m.layer: torch.rand(g.size, generator=gen) for g in calibration.groups for m in g.members}


@dataclass(frozen=True)
class FormulaCriterion:
    """A grammar formula, evaluated on every member's statistics and reduced over the group."""

    formula: Formula
    checks_scores = True

    @property
    def name(self) -> str:
        return self.formula.name or self.formula.text

    def _not_applicable(self, members, group_root: str) -> NotApplicable | None:
        """Why the formula cannot rank this group *because* it reads an operand the group lacks, if so."""
        for operand in sorted(self.formula.operands):
            for s in members:
                if operand in s.missing:
                    why = (": no loss gradient reaches its output (computed under torch.no_grad() or detached, or "
                           "not leading to the loss)" if operand == "G" else "")
                    needs = OPERAND_SPECS[operand].missing or operand
                    return NotApplicable(f"needs {needs}, which the group of layer {group_root!r} does not have{why}")
        return None

    def group_scores(self, calibration: Calibration, reduction: str, strict: bool = True) -> list[torch.Tensor]:
        """One score per channel of every group; ``strict`` also rejects constant or mostly tied scores."""
        scores = []
        for g, (group, members) in enumerate(zip(calibration.groups, calibration.stats_for_formula(self.formula))):
            per_member = [self.formula.score(s).double() for s in members]
            combined = reduce_members(per_member, reduction)
            missing = self._not_applicable(members, group.root)
            # non-strict callers (transfer) check rankability themselves and go on with ties
            problem = (_non_finite(per_member, g)
                       or (rank_problem(combined, g) if strict or missing is not None else None))
            if problem is not None:
                raise missing if missing is not None else InvalidScores(problem)
            scores.append(combined)
        return scores

    def layer_scores(self, calibration: Calibration) -> dict[str, torch.Tensor]:
        """The filter scores of every producing layer, by layer name (for layer pruning)."""
        out = {}
        for members, g in zip(calibration.stats_for_formula(self.formula), calibration.groups):
            for s, m in zip(members, g.members):
                score = self.formula.score(s).double()
                if not torch.isfinite(score).all():
                    raise InvalidScores(f"non-finite scores in layer {m.layer!r}")
                out[m.layer] = score
        return out


@dataclass(frozen=True)
class TorchPruningCriterion:
    """A Torch-Pruning importance class (``tp-l2``...), with its own normalization and prunevo's group
    reduction passed to it (mean, Torch-Pruning's default, unless ``--group-reduction`` says otherwise)."""

    name: str
    checks_scores = True

    def __post_init__(self) -> None:
        if self.name not in TP_CRITERIA:
            raise FormulaError(f"unknown Torch-Pruning criterion {self.name!r}; allowed: {', '.join(TP_CRITERIA)}")

    def group_scores(self, calibration: Calibration, reduction: str, strict: bool = True) -> list[torch.Tensor]:
        scores = calibration.memo(("tp", self.name, reduction),
                                  lambda: tp_group_scores(calibration, self.name, reduction))
        for g, s in enumerate(scores):
            problem = rank_problem(s, g) if strict else _non_finite([s], g)
            if problem is not None:
                raise InvalidScores(problem)
        return scores

    def layer_scores(self, calibration: Calibration) -> dict[str, torch.Tensor]:
        """Each producing layer gets its group's *raw* scores: dividing every group by its mean (the
        default normalizer) would give every layer the same mean score, and layer pruning compares layers.
        LAMP keeps its own normalization, which is made for comparing layers."""
        normalizer = "default" if TP_CRITERIA[self.name].normalizer == "lamp" else None
        scores = calibration.memo(("tp-layers", self.name),
                                  lambda: tp_group_scores(calibration, self.name, "mean", normalizer))
        out = {}
        for s, g in zip(scores, calibration.groups):
            if not torch.isfinite(s).all():
                raise InvalidScores(f"non-finite scores in layer {g.root!r}")
            out.update({m.layer: s for m in g.members})
        return out


def score_groups(criterion: Criterion, calibration: Calibration, reduction: str,
                 strict: bool = True) -> list[torch.Tensor]:
    """``criterion``'s scores of every group, checked: one score per channel of each group, and (``strict``)
    scores that rank (``InvalidScores`` otherwise); without ``strict`` only non-finite scores are refused."""
    if getattr(criterion, "checks_scores", False):
        return criterion.group_scores(calibration, reduction, strict)
    scores = list(criterion.group_scores(calibration, reduction))
    _check_shapes(criterion, scores, calibration)
    scores = [s.detach().cpu().double() for s in scores]
    for g, s in enumerate(scores):
        problem = rank_problem(s, g) if strict else _non_finite([s], g)
        if problem is not None:
            raise InvalidScores(problem)
    return scores


def score_layers(criterion: Criterion, calibration: Calibration) -> dict[str, torch.Tensor]:
    """The filter scores of every producing layer, by layer name (layer pruning): the criterion's own
    ``layer_scores``, or else each member of a group gets its group's scores."""
    if hasattr(criterion, "layer_scores"):
        return criterion.layer_scores(calibration)
    scores = score_groups(criterion, calibration, "mean", strict=False)
    return {m.layer: s for s, g in zip(scores, calibration.groups) for m in g.members}


def _check_shapes(criterion: Criterion, scores: list, calibration: Calibration) -> None:
    sizes = [g.size for g in calibration.groups]
    if len(scores) != len(sizes):
        wrong = f"{len(scores)} score vectors for {len(sizes)} groups"
    else:
        wrong = next((f"scores of shape {tuple(getattr(s, 'shape', ()))} for group {g} of {n} channels"
                      for g, (s, n) in enumerate(zip(scores, sizes))
                      if not isinstance(s, torch.Tensor) or tuple(s.shape) != (n,)), None)
    if wrong is not None:
        raise PrunevoError(f"criterion {criterion.name!r} returned {wrong}; group_scores must return one 1-D "
                           f"tensor per group of calibration.groups, one score per channel")


def _non_finite(scores: list[torch.Tensor], group_index: int) -> str | None:
    return f"non-finite scores in group {group_index}" if any(not torch.isfinite(s).all() for s in scores) else None


def criterion_names() -> str:
    return ", ".join((*BASELINE_NAMES, RANDOM))


def as_baseline(name: str, allocation: str | None, seed: int = 0) -> Criterion:
    """The baseline ``name`` (a classic or Torch-Pruning criterion, or random) as it runs under ``allocation``.

    Under global allocation a classic formula is divided by its layer's mean |score| (``lnorm``), as
    Torch-Pruning's global pruning divides every importance by its group's mean (its own classes keep their
    normalizers: the mean, LAMP's): a classic is then compared under its best-known global form, not with raw
    scores whose scale differs from layer to layer."""
    if allocation == "global" and name in CLASSIC_TEXT:
        return FormulaCriterion(Formula.parse(f"lnorm({CLASSIC_TEXT[name]})", name=name))
    return as_criterion(name, seed)


ALLOWED = ("a criterion name, formula text, a .json/.txt formula file, a Formula, or an object with a `name` "
           "and a `group_scores(calibration, reduction)` method (prunevo.pruning.criteria.Criterion)")


def as_criterion(spec: "str | os.PathLike | Formula | Criterion", seed: int = 0) -> Criterion:
    """A criterion from a classic name, a Torch-Pruning name (``tp-l2``...), ``random``, formula text, a
    .json/.txt formula file, a Formula, or any object that follows the ``Criterion`` protocol (returned as
    it is)."""
    from prunevo.primitives.export import read_formula

    if isinstance(spec, Formula):
        return FormulaCriterion(spec)
    if isinstance(spec, Criterion):
        return spec
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        missing = [m for m in ("name", "group_scores") if not hasattr(spec, m)]
        raise PrunevoError(f"{type(spec).__name__} object is not a criterion (it has no "
                           f"{' and no '.join(missing)}); allowed: {ALLOWED}")
    if spec == RANDOM:
        return RandomCriterion(seed)
    if spec in CLASSIC_TEXT:
        return FormulaCriterion(Formula.parse(CLASSIC_TEXT[spec], name=spec))
    if spec in TP_CRITERIA:
        return TorchPruningCriterion(spec)
    try:
        return FormulaCriterion(read_formula(spec))
    except FormulaError as exc:
        raise FormulaError(f"{exc} (or use a named criterion: {criterion_names()})") from None
