"""Learning-rate schedules as factors of the peak LR over training progress ``t`` in [0, 1).

Base training: ``cosine`` or ``step`` (x0.1 at 50% and 75%).  Retraining after pruning, as defined by
Zimmer et al. (*Back to Basics: IMP*):
- ``ft``: fine-tuning at the constant final LR of the original schedule (step: 0.01 of the peak);
- ``slr``: linear warm-up over the first ``warmup`` share to the peak LR, then the *original* schedule
  compressed into the remaining budget;
- ``clr``: the same warm-up, then one cosine cycle from the peak to zero, whatever the original schedule.

``lr_factor`` is the definition; training steps torch's own ``lr_scheduler`` classes built by
``make_scheduler`` (``CosineAnnealingLR``, ``MultiStepLR``, ``ConstantLR``, ``LinearLR`` warm-up chained
with ``SequentialLR``), which follow it at ``t = step / steps``.
"""
from __future__ import annotations

import math

import torch
from torch.optim import lr_scheduler

SCHEDULES = ("cosine", "step", "ft", "slr", "clr")
RETRAIN_SCHEDULES = ("ft", "slr", "clr")
BASE_SCHEDULES = ("cosine", "step")
WARMUP = 0.1
FT_FACTOR = 0.01
WARMUP_START = 1e-3  # LinearLR cannot start from 0


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


def _base_scheduler(opt: torch.optim.Optimizer, name: str, steps: int) -> lr_scheduler.LRScheduler:
    if name == "cosine":
        return lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    return lr_scheduler.MultiStepLR(opt, milestones=[round(0.5 * steps), round(0.75 * steps)], gamma=0.1)


def make_scheduler(opt: torch.optim.Optimizer, schedule: str, steps: int, original: str = "step",
                   warmup: float = WARMUP) -> lr_scheduler.LRScheduler:
    """The schedule as torch ``lr_scheduler`` objects over ``steps`` optimizer steps (call ``step()`` after
    each optimizer step)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown LR schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")
    if schedule in BASE_SCHEDULES:
        return _base_scheduler(opt, schedule, steps)
    if schedule == "ft":
        return lr_scheduler.ConstantLR(opt, factor=FT_FACTOR, total_iters=steps + 1)
    after = original if schedule == "slr" else "cosine"
    warm = round(warmup * steps)
    if warm == 0:
        return _base_scheduler(opt, after, steps)
    ramp = lr_scheduler.LinearLR(opt, start_factor=WARMUP_START, end_factor=1.0, total_iters=warm)
    return lr_scheduler.SequentialLR(opt, [ramp, _base_scheduler(opt, after, steps - warm)], milestones=[warm])


def lr_curve(schedule: str, steps: int, original: str = "step", warmup: float = WARMUP) -> list[float]:
    """The factor of the peak LR at every optimizer step of a ``steps``-step budget, as training applies it."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = make_scheduler(opt, schedule, steps, original, warmup)
    factors = []
    for _ in range(steps):
        factors.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return factors
