"""Iterative pruning (IMP, Zimmer et al. 2021): k prune/retrain cycles that together reach the target.

Each cycle removes the same share ``1 - (1 - s) ** (1 / k)`` of what is left, so k cycles remove ``s``.
Structured cycles prune channels with any criterion; the classic unstructured baseline zeroes the
globally smallest-magnitude weights of all convolution and linear layers with ``torch.nn.utils.prune``
(sparse weights, same shapes: it saves no time without sparse kernels, so it is reported by sparsity).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from prunevo.errors import PrunevoError


def cycle_ratio(total: float, cycles: int) -> float:
    """The share of the remainder each of ``cycles`` cycles removes so that ``total`` is removed in all."""
    if cycles < 1:
        raise PrunevoError(f"cycles must be >= 1, got {cycles}")
    if not 0.0 <= total < 1.0:
        raise PrunevoError(f"the share to remove must be in [0, 1), got {total}")
    return 1.0 - (1.0 - total) ** (1.0 / cycles)


def cycle_fractions(keep_fraction: float, cycles: int) -> list[float]:
    """What remains (of MACs, or weights) after each cycle: ``keep ** (c / k)``, ending at ``keep``."""
    per_cycle = 1.0 - cycle_ratio(1.0 - keep_fraction, cycles)
    return [keep_fraction if c == cycles else per_cycle ** c for c in range(1, cycles + 1)]


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def magnitude_step(model: nn.Module, amount: float) -> None:
    """Zero the ``amount`` share of the still-unpruned weights with the smallest magnitude, globally.

    ``torch.nn.utils.prune`` applies a new amount to the weights that survived the previous steps, so
    repeating this with ``cycle_ratio`` reaches the total sparsity.
    """
    prune.global_unstructured(prunable_weights(model), pruning_method=prune.L1Unstructured, amount=amount)


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold the pruning masks into the weights (plain parameters again, zeros in place)."""
    for module, name in prunable_weights(model):
        if prune.is_pruned(module) and hasattr(module, f"{name}_mask"):
            prune.remove(module, name)
    return model


@torch.no_grad()
def sparsity(model: nn.Module) -> float:
    """The share of zero weights over all convolution and linear layers."""
    zeros = total = 0
    for module, name in prunable_weights(model):
        weight = getattr(module, name)
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / max(1, total)
