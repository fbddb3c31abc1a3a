"""Batch sources: a ``DataLoader`` for any dataset, and direct slicing for in-memory tensors.

Images already in memory without a per-sample transform (``TensorImages``) are batched by indexing
the stacked tensor, which skips the per-sample ``__getitem__`` and collation of a ``DataLoader``: the
fitness evaluator's tiny fine-tunes spend most of their time there otherwise.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from prunevo.zoo.images import TensorImages


class TensorBatches:
    """``(x[idx], y[idx])`` batches of in-memory images, in a seeded order when shuffled (a new order each
    pass, drawn from one generator, as a DataLoader's sampler does)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int,
                 drop_last: bool = False):
        self.x, self.y, self.batch_size, self.shuffle, self.drop_last = x, y, batch_size, shuffle, drop_last
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        full, rest = divmod(len(self.x), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        for b in range(len(self)):
            if order is None:
                window = slice(b * self.batch_size, (b + 1) * self.batch_size)
                yield self.x[window], self.y[window]
            else:
                idx = order[b * self.batch_size:(b + 1) * self.batch_size]
                yield self.x[idx], self.y[idx]


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int, workers: int = 0,
                pin: bool = False):
    """Batches of ``dataset``; shuffled ones drop a last partial batch (BatchNorm cannot train on one sample)."""
    drop_last = shuffle and len(dataset) > batch_size
    if isinstance(dataset, TensorImages) and dataset.transform is None:
        return TensorBatches(dataset.x, dataset.targets, batch_size, shuffle, seed, drop_last)
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=gen, num_workers=workers,
                      pin_memory=pin, drop_last=drop_last, persistent_workers=workers > 0)


def seeded_subset(dataset: Dataset, size: int | None, seed: int) -> Dataset:
    """``size`` samples of ``dataset`` drawn from ``seed`` (all of it when ``size`` is None or larger)."""
    if size is None or size >= len(dataset):
        return dataset
    idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:size]
    if isinstance(dataset, TensorImages):
        return TensorImages(dataset.x[idx], dataset.targets[idx], dataset.transform)
    return Subset(dataset, idx.tolist())
