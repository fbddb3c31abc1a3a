"""Verdicts: is one criterion better than another, paired by seed, with a 95% confidence interval?

Two criteria measured with the same seeds (the same calibration batch, BatchNorm re-estimation batches and
fine-tune order for seed ``i``) are compared by their per-seed differences: the mean difference and its
Student-t interval (``scipy.stats.ttest_rel``), which is narrower than comparing two means because what the
seed does to both cancels.  A difference counts as an improvement only when the whole interval is above 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``a[i] - b[i]`` over ``n`` seeds and its ``CONFIDENCE`` interval (None with fewer than 2 seeds),
    in the units of the values (``pp`` formats them as percentage points)."""

    mean: float
    low: float | None
    high: float | None
    n: int

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.low is not None and (self.low > 0 or self.high < 0)

    def pp(self) -> str:
        """``+4.1 pp [+3.2, +5.0]`` (values are fractions: accuracies)."""
        if self.low is None:
            return f"{100 * self.mean:+.1f} pp (1 seed: no interval)"
        return f"{100 * self.mean:+.1f} pp [{100 * self.low:+.1f}, {100 * self.high:+.1f}]"


def paired_difference(a: list[float], b: list[float]) -> PairedDifference:
    """``a`` minus ``b``, paired by position (seed).  Raises ValueError when the lengths differ or are 0."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired values need equal, non-zero lengths; got {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b)]
    mean = sum(diffs) / len(diffs)
    if len(diffs) < 2:
        return PairedDifference(mean, None, None, 1)
    if max(diffs) - min(diffs) <= 1e-12 * max(1.0, abs(mean)):  # identical differences: the interval is the point
        return PairedDifference(mean, mean, mean, len(diffs))
    interval = stats.ttest_rel(a, b).confidence_interval(CONFIDENCE)
    low, high = float(interval.low), float(interval.high)
    if math.isnan(low) or math.isnan(high):
        return PairedDifference(mean, None, None, len(diffs))
    return PairedDifference(mean, low, high, len(diffs))


def verdict(name: str, other: str, diff: PairedDifference, where: str) -> str:
    """One line: ``name`` against ``other`` (the best classic) on ``where``; every line names both."""
    if diff.n > 1 and diff.low == diff.high == 0.0:  # the same value on every seed: the same selection
        return f"{name} = {other} on {where} (the same value on all {diff.n} seeds)"
    if diff.significant and diff.mean > 0:
        return f"{name} vs {other}: {diff.pp()} on {where}"
    if diff.significant:
        return f"{name} is worse than {other} ({diff.pp()}) on {where}: {other} is the better choice"
    return f"{name}: no significant improvement over {other} ({diff.pp()}) on {where}: {other} is the better choice"
