"""What a transfer run reports: measurements, the pruned architecture's record, and the result row."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Measurement:
    params: int
    macs: int
    top1: float
    top5: float | None = None
    latency_ms: dict[str, dict[int, float]] = field(default_factory=dict)  # device -> batch -> median ms


@dataclass
class PruneRecord:
    """How to rebuild the pruned architecture from the base model (saved with the pruned weights)."""

    cycles: list[dict[str, list[int]]] = field(default_factory=list)  # per cycle: group root -> kept channels
    removed: list[str] = field(default_factory=list)  # modules replaced by nn.Identity (layer pruning)


@dataclass
class ApplyResult:
    """One pruning of one model (``apply_formula``; a row of ``report.json``).

    Attributes:
        criterion: the criterion's name (or formula text).
        formula: its formula text when it has one.
        seed: the seed of calibration images, random choices and fine-tuning.
        channel_ratio: the share of channels removed (uniform allocation), or the amount the target search found.
        macs_fraction: the pruned model's MACs over the unpruned one's (Torch-Pruning's count).
        before: the unpruned model's ``Measurement`` (params, MACs, top-1, top-5, latency in ms).
        after: the pruned (and fine-tuned) model's.
        pruned_top1: top-1 (a fraction) after BatchNorm re-estimation, before the (last) fine-tune.
        kept: group root -> [kept channels, original channels].
        wall_s: seconds per step (calibration, scoring, pruning, fine-tune...).
        strategy: the strategy (``TransferConfig.variant``).
        removed: layer pruning: the removed blocks or layers.
        sparsity: unstructured pruning: the share of zero conv/linear weights.
        search_top1: random search: each candidate's held-out top-1.
        reconstruction: with reconstruction, what it did (``ReconstructionReport.summary``: seconds, layers
            refitted, their mean relative output error before and after); None without.

    Example:
        >>> from prunevo import FitConfig, Setup, TransferConfig, apply_formula
        >>> config = TransferConfig(setup=Setup(model="small-vgg", dataset="digits"), target_macs=0.5,
        ...                         finetune=FitConfig(epochs=0), latency=None)
        >>> _, result = apply_formula("std(F)", config, seed=1)
        >>> result.criterion, result.seed, result.after.macs < result.before.macs
        ('std(F)', 1, True)
    """

    criterion: str
    formula: str | None
    seed: int
    channel_ratio: float
    macs_fraction: float
    before: Measurement
    after: Measurement
    pruned_top1: float  # after BatchNorm recalibration, before the (last) fine-tuning
    kept: dict[str, list[int]]  # group root -> [kept channels, original channels]
    wall_s: dict[str, float]
    strategy: str = "uniform"  # TransferConfig.variant
    removed: list[str] = field(default_factory=list)  # layer pruning: the removed blocks/layers
    sparsity: float | None = None  # unstructured pruning: share of zero conv/linear weights
    search_top1: list[float] = field(default_factory=list)  # random search: held-out top-1 of each candidate
    reconstruction: dict | None = None  # with reconstruction: seconds, layers, errors before and after

    def to_dict(self) -> dict:
        """The result as plain data (``report.json``)."""
        return asdict(self)



def criterion_label(criterion) -> tuple[str, str | None]:
    """(name, formula text or None) of a criterion, as reports show it."""
    formula = getattr(criterion, "formula", None)
    return criterion.name, (None if formula is None else formula.text)
