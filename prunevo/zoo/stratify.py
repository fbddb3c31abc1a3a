"""Class-stratified samples and splits: one sampler, ``stratified_parts``, behind every subset prunevo draws
(data splits, validation and held-out subsets, calibration batches).

Not scikit-learn's StratifiedShuffleSplit: it keeps each class's share of the data, whereas calibration
batches and fitness subsets take the same number of samples from every class (fewer where a class has
fewer), which it cannot express.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch


def stratified_parts(labels: torch.Tensor, sizes: Callable[[int], Sequence[int]],
                     gen: torch.Generator) -> list[torch.Tensor]:
    """Every class's indices (classes in sorted order) in an order drawn from ``gen``, cut into consecutive
    parts of ``sizes(n)`` samples, n being the class's count (parts past the class's end are short); part p
    of the result joins part p of every class."""
    labels = torch.as_tensor(labels)
    parts: list[list[torch.Tensor]] = []
    for c in torch.unique(labels):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        start = 0
        for p, size in enumerate(sizes(len(idx))):
            if p == len(parts):
                parts.append([])
            parts[p].append(idx[start:start + size])
            start += size
    return [torch.cat(p) for p in parts]


def stratified_indices(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Indices of ``per_class`` samples of every class (fewer if a class has fewer), in a seeded order."""
    gen = torch.Generator().manual_seed(seed)
    (order,) = stratified_parts(labels, lambda n: [min(per_class, n)], gen)
    return order[torch.randperm(len(order), generator=gen)]  # classes mixed, not one after the other


def stratified_batch(x: torch.Tensor, y: torch.Tensor, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` samples of every class (fewer if a class has fewer), in a seeded order."""
    order = stratified_indices(y, per_class, seed)
    return x[order], y[order]


def stratified_split(labels: torch.Tensor | np.ndarray, fractions: Sequence[float], seed: int) -> list[torch.Tensor]:
    """Sorted indices of each part, every class split in the same proportions (its count times the
    cumulative fractions, rounded)."""
    def sizes(n: int) -> list[int]:
        return np.diff(np.round(np.cumsum(fractions) * n).astype(int), prepend=0).tolist()

    parts = stratified_parts(torch.as_tensor(labels), sizes, torch.Generator().manual_seed(seed))
    return [part.sort().values for part in parts]
