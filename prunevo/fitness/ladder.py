"""The fidelity ladder: successive halving over evaluation budgets.

Rung 0 is the pruned net's BatchNorm-recalibrated accuracy right after pruning, on a fixed stratified
subset of the validation split: seconds per candidate, and every candidate gets it.  Only the best
``keep[0]`` share of a batch of candidates climbs to rung 1, the best ``keep[1]`` of those to rung 2, and so
on; the top rung is the task's full measurement (its fine-tune, every validation image, every seed).
Intermediate rungs fine-tune for ``epochs`` times the product of the later shares, so that every rung costs
about as much as the next (the successive-halving rule).  Only top-rung results enter the hall of fame.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from prunevo.errors import PrunevoError
from prunevo.training import FitConfig
from prunevo.utils import stable_hash


@dataclass(frozen=True)
class Ladder:
    keep: tuple[float, ...] = (0.25,)  # share of candidates promoted past each rung (one per rung below the top)
    subset: int = 500  # validation images that rung 0 scores (stratified; the whole split when it is smaller)
    recal_batches: int = 8  # training batches of 256 that re-estimate BatchNorm statistics at rung 0

    def __post_init__(self) -> None:
        if not self.keep or not all(0 < k <= 1 for k in self.keep):
            raise PrunevoError(f"ladder shares must be in (0, 1], got {list(self.keep)}")
        if self.subset < 10:
            raise PrunevoError(f"the ladder's rung-0 subset needs at least 10 images, got {self.subset}")
        if self.recal_batches < 1:
            raise PrunevoError(f"the ladder's rung 0 needs at least 1 recalibration batch, got {self.recal_batches}")

    @property
    def rungs(self) -> int:
        return len(self.keep) + 1

    def promoted(self, rung: int, count: int) -> int:
        """How many of ``count`` candidates scored at ``rung`` climb to the next one (at least one)."""
        return min(count, max(1, math.ceil(self.keep[rung] * count)))

    def budget(self, rung: int, finetune: FitConfig) -> FitConfig:
        """The fine-tune of a rung below the top (rung 0 has none)."""
        if rung == 0:
            return replace(finetune, epochs=0.0)
        return replace(finetune, epochs=finetune.epochs * math.prod(self.keep[rung:]))

    def tag(self, rung: int, finetune: FitConfig) -> str:
        """What a rung below the top measures, hashed into its cache keys (the top rung uses the task's keys)."""
        rung0 = [self.subset, self.recal_batches] if rung == 0 else None
        return f"rung{rung}:" + stable_hash([asdict(self.budget(rung, finetune)), rung0])[:10]


def parse_ladder(text: str, subset: int = 500, recal_batches: int = 8) -> Ladder | None:
    """``--ladder 0.25`` (rung 0, then the top 25% at the full budget) or ``0.5,0.5`` (three rungs);
    ``off`` or an empty string disables it."""
    if text.strip().lower() in ("", "off", "none"):
        return None
    try:
        keep = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise PrunevoError(f"{{param:ladder}} {text!r} is not a list of shares; allowed: e.g. 0.25 or 0.5,0.5, "
                           f"or off") from None
    return Ladder(keep, subset, recal_batches)
