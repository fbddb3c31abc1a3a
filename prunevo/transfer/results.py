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

    def to_dict(self) -> dict:
        return asdict(self)



def criterion_label(criterion) -> tuple[str, str | None]:
    """(name, formula text or None) of a criterion, as reports show it."""
    formula = getattr(criterion, "formula", None)
    return criterion.name, (None if formula is None else formula.text)
