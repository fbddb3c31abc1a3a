"""Many candidate weight sets of one architecture: BatchNorm recalibration, a brief fine-tune and top-1, for
each, either one after another on one reused module (``loop``) or fused into one pass (``fused``).

The fused pass stacks the K state dicts (``torch.func.stack_module_state`` layout) and runs
``functional_call`` under ``vmap``: convolutions with a stacked weight become one grouped convolution, as in
HFTA, so that K small nets fill a GPU that one of them leaves idle.  Every candidate keeps its own
BatchNorm statistics and its own optimizer state; SGD is elementwise, so stepping the stacked tensors is
stepping each candidate.  All candidates read the same batches (they share the fine-tune seed), and the
stack is padded to a fixed size, so a candidate's result does not depend on its companions.

On a CPU the fused pass is slower than the loop (grouped convolutions gain nothing there, and ``vmap``
adds overhead: docs/BENCHMARKS.md), so callers fuse on CUDA and loop on the CPU.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from itertools import islice

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import Dataset

from prunevo.training.batches import make_loader
from prunevo.training.config import Accelerator, FitConfig
from prunevo.training.loop import CPU, fit, recalibrate_bn, sgd_steps, top1
from prunevo.utils import load_state

_BN = nn.modules.batchnorm._BatchNorm


@dataclass(frozen=True)
class Recalibration:
    """BatchNorm re-estimation on ``batches`` shuffled batches of ``batch_size`` training images."""

    batches: int = 8
    batch_size: int = 256


def score_states(model: nn.Module, states: list[dict[str, torch.Tensor]], train: Dataset, val: Dataset,
                 budget: FitConfig, seed: int, recal: Recalibration = Recalibration(), fused: bool = False,
                 pad_to: int | None = None, masks: list[dict[str, torch.Tensor]] | None = None,
                 accel: Accelerator = CPU) -> list[float]:
    """Validation top-1 of each state after recalibration, the fine-tune ``budget`` (none at 0 epochs) and a
    second recalibration.  ``masks`` (per state, tensor name -> 0/1 multiplier) keep masked channels at zero
    through fine-tuning (masks on the unpruned shape, for candidates of different pruned widths)."""
    if not states:
        return []
    if fused:
        return _fused(model, states, train, val, budget, seed, recal, pad_to or len(states), masks, accel)
    out = []
    for i, state in enumerate(states):
        load_state(model, state)
        after_step = None
        if masks is not None:
            mask = masks[i]
            after_step = lambda m, mask=mask: _apply_masks(dict(m.named_parameters()), mask)  # noqa: E731
        recalibrate_bn(model, train, accel, recal.batches, recal.batch_size, seed)
        if budget.epochs > 0:
            fit(model, train, budget, seed, accel, after_step=after_step)
            recalibrate_bn(model, train, accel, recal.batches, recal.batch_size, seed)
        out.append(top1(model, val, accel))
    return out


@torch.no_grad()
def _apply_masks(tensors: dict[str, torch.Tensor], mask: dict[str, torch.Tensor]) -> None:
    for name, m in mask.items():
        if name in tensors:
            tensors[name].mul_(m)


class _Stack:
    """K state dicts as stacked parameters (leaves that train) and buffers, and the vmapped forward."""

    def __init__(self, model: nn.Module, states: list[dict[str, torch.Tensor]], accel: Accelerator):
        self.module = copy.deepcopy(model).to(accel.device)
        names = {n for n, _ in self.module.named_parameters()}
        self.params = {k: torch.stack([s[k] for s in states]).to(accel.device).requires_grad_()
                       for k in states[0] if k in names}
        self.buffers = {k: torch.stack([s[k] for s in states]).to(accel.device) for k in states[0] if k not in names}
        self.bns = [m for m in self.module.modules() if isinstance(m, _BN)]

        def one(params, buffers, x):
            return functional_call(self.module, (params, buffers), (x,))

        self.forward = torch.vmap(one, in_dims=(0, 0, None), randomness="same")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(self.params, self.buffers, x)  # (K, batch, classes)

    @torch.no_grad()
    def recalibrate(self, train: Dataset, recal: Recalibration, seed: int, accel: Accelerator) -> None:
        """``update_bn`` for every candidate: a cumulative average of batch statistics, written here as a
        momentum of 1/i at the i-th batch (torch's own rule when momentum is None)."""
        momenta = [bn.momentum for bn in self.bns]
        prefixes = {n + "." for n, m in self.module.named_modules() if isinstance(m, _BN)}
        for key, value in self.buffers.items():
            if any(key.startswith(p) for p in prefixes):
                if key.endswith("running_mean") or key.endswith("num_batches_tracked"):
                    value.zero_()
                elif key.endswith("running_var"):
                    value.fill_(1.0)
        self.module.train()
        try:
            loader = make_loader(train, recal.batch_size, True, seed)
            for i, (x, _) in enumerate(islice(loader, recal.batches), 1):
                for bn in self.bns:
                    bn.momentum = 1.0 / i
                with accel.autocast():
                    self(accel.put(x))
        finally:
            for bn, m in zip(self.bns, momenta):
                bn.momentum = m
            self.module.eval()

    def fit(self, train: Dataset, config: FitConfig, seed: int, accel: Accelerator,
            masks: dict[str, torch.Tensor] | None) -> None:
        """``training.fit`` for every candidate at once (same batches, same schedule, one optimizer state each)."""
        loss_of = torch.vmap(nn.functional.cross_entropy, in_dims=(0, None))
        self.module.train()
        sgd_steps(list(self.params.values()), lambda x, y: loss_of(self(x).float(), y), train, config, seed, accel,
                  (lambda: _apply_masks(self.params, masks)) if masks is not None else None)
        self.module.eval()

    @torch.no_grad()
    def top1(self, val: Dataset, accel: Accelerator, batch_size: int = 256) -> list[float]:
        correct = None
        seen = 0
        for x, y in make_loader(val, batch_size, False, 0):
            with accel.autocast():
                logits = self(accel.put(x)).float()
            hits = (logits.argmax(-1) == y.to(accel.device)).sum(1)
            correct = hits if correct is None else correct + hits
            seen += len(y)
        return [c / max(1, seen) for c in correct.tolist()]


def _fused(model: nn.Module, states: list[dict[str, torch.Tensor]], train: Dataset, val: Dataset, budget: FitConfig,
           seed: int, recal: Recalibration, pad_to: int, masks: list[dict[str, torch.Tensor]] | None,
           accel: Accelerator) -> list[float]:
    n = len(states)
    if pad_to < n:
        raise ValueError(f"cannot pad {n} states to {pad_to}")
    padded = states + [states[-1]] * (pad_to - n)  # a fixed K: the same kernels whoever the companions are
    stack = _Stack(model, padded, accel)
    stacked_masks = None
    if masks is not None:
        masks = masks + [masks[-1]] * (pad_to - n)
        stacked_masks = {k: torch.stack([m[k] for m in masks]).to(accel.device) for k in masks[0]}
    stack.recalibrate(train, recal, seed, accel)
    if budget.epochs > 0:
        stack.fit(train, budget, seed, accel, stacked_masks)
        stack.recalibrate(train, recal, seed, accel)
    return stack.top1(val, accel)[:n]


