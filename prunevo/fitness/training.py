"""Seeded, deterministic training and evaluation loops for small in-memory datasets."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn


@dataclass(frozen=True)
class TrainBudget:
    """SGD with Nesterov momentum and a cosine learning-rate decay over ``epochs``."""

    epochs: float = 1.0  # fractional epochs are allowed: a brief fine-tune may see part of the data
    lr: float = 0.01
    batch_size: int = 64
    weight_decay: float = 5e-4
    momentum: float = 0.9
    max_samples: int | None = None  # train on a fixed, seeded subset of this size


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads, then restore: results must not depend on the worker layout."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, budget: TrainBudget, seed: int,
          after_step: Callable[[nn.Module], None] | None = None) -> nn.Module:
    """Train in place; identical inputs and seed give identical weights."""
    gen = torch.Generator().manual_seed(seed)
    if budget.max_samples is not None and budget.max_samples < len(x):
        subset = torch.randperm(len(x), generator=gen)[: budget.max_samples]
        x, y = x[subset], y[subset]
    steps_per_epoch = max(1, math.ceil(len(x) / budget.batch_size))
    total_steps = max(1, round(budget.epochs * steps_per_epoch))
    opt = torch.optim.SGD(model.parameters(), lr=budget.lr, momentum=budget.momentum, nesterov=budget.momentum > 0,
                          weight_decay=budget.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total_steps)))
    model.train()
    step = 0
    while step < total_steps:
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), budget.batch_size):
            if step >= total_steps:
                break
            idx = order[start:start + budget.batch_size]
            if len(idx) < 2:
                continue  # BatchNorm cannot train on one sample
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
            if after_step is not None:
                after_step(model)
            step += 1
    model.eval()
    return model


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int = 256, batches: int = 8) -> None:
    """Re-estimate BatchNorm running statistics (cumulative average) on a few batches (EagleEye)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for start in range(0, min(len(x), batch_size * batches), batch_size):
        model(x[start:start + batch_size])
    model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        correct += (model(x[start:start + batch_size]).argmax(1) == y[start:start + batch_size]).sum().item()
    return correct / max(1, len(x))
