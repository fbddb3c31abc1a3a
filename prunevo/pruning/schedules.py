"""Learning-rate schedules as factors of the peak LR over training progress ``t`` in [0, 1).

Base training: ``cosine`` or ``step`` (x0.1 at 50% and 75%).  Retraining after pruning, as defined by
Zimmer et al. (*Back to Basics: IMP*):
- ``ft``: fine-tuning at the constant final LR of the original schedule (step: 0.01 of the peak);
- ``slr``: linear warm-up over the first ``warmup`` share to the peak LR, then the *original* schedule
  compressed into the remaining budget;
- ``clr``: the same warm-up, then one cosine cycle from the peak to zero, whatever the original schedule.
"""
from __future__ import annotations

import math

SCHEDULES = ("cosine", "step", "ft", "slr", "clr")
RETRAIN_SCHEDULES = ("ft", "slr", "clr")
BASE_SCHEDULES = ("cosine", "step")
WARMUP = 0.1
FT_FACTOR = 0.01


def _base(name: str, t: float) -> float:
    if name == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    return 1.0 if t < 0.5 else 0.1 if t < 0.75 else 0.01


def lr_factor(schedule: str, t: float, original: str = "step", warmup: float = WARMUP) -> float:
    """The LR multiplier at progress ``t`` (0 = first step, 1 = end of the budget)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown LR schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")
    t = min(max(t, 0.0), 1.0)
    if schedule in BASE_SCHEDULES:
        return _base(schedule, t)
    if schedule == "ft":
        return FT_FACTOR
    if t < warmup:
        return t / warmup
    rest = (t - warmup) / (1 - warmup)
    return _base(original, rest) if schedule == "slr" else _base("cosine", rest)


def lr_curve(schedule: str, steps: int, original: str = "step", warmup: float = WARMUP) -> list[float]:
    """Factors at every optimizer step of a budget of ``steps`` steps (each step at its midpoint)."""
    return [lr_factor(schedule, (s + 0.5) / steps, original, warmup) for s in range(steps)]
