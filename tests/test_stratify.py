"""Class-stratified samples and splits: one sampler behind the data splits, subsets and calibration batches."""
from __future__ import annotations

import torch

import prunevo.zoo.stratify as stratify
from prunevo.zoo.images import TensorImages
from prunevo.zoo.stratify import stratified_indices, stratified_split

LABELS = torch.cat([torch.zeros(50), torch.ones(23), torch.full((7,), 2)]).long()
LABELS = LABELS[torch.randperm(80, generator=torch.Generator().manual_seed(0))]  # classes 50, 23 and 7 strong


def test_a_split_cuts_every_class_in_the_same_proportions_and_is_fixed_by_its_seed():
    parts = stratified_split(LABELS, (0.6, 0.2, 0.2), 4)
    assert sorted(torch.cat(parts).tolist()) == list(range(80))  # disjoint and complete
    assert [torch.bincount(LABELS[p], minlength=3).tolist() for p in parts] == [[30, 14, 4], [10, 4, 2], [10, 5, 1]]
    assert all(torch.equal(p, p.sort().values) for p in parts)
    assert all(torch.equal(a, b) for a, b in zip(parts, stratified_split(LABELS.numpy(), (0.6, 0.2, 0.2), 4)))
    assert not torch.equal(parts[1], stratified_split(LABELS, (0.6, 0.2, 0.2), 5)[1])


def test_a_sample_takes_as_many_of_every_class_fewer_where_a_class_has_fewer():
    order = stratified_indices(LABELS, 10, 1)
    assert torch.bincount(LABELS[order]).tolist() == [10, 10, 7] and len(set(order.tolist())) == 27
    assert torch.equal(order, stratified_indices(LABELS, 10, 1))
    assert LABELS[order].unique_consecutive().numel() > 3  # classes mixed, not one block after another


def test_data_splits_subsets_and_calibration_batches_use_the_one_sampler(monkeypatch):
    from prunevo.fitness.data import _halves, _stratified
    from prunevo.zoo.datasets import load_digits

    calls = []
    parts = stratify.stratified_parts
    monkeypatch.setattr(stratify, "stratified_parts", lambda *args: calls.append(args) or parts(*args))
    split = TensorImages(torch.randn(80, 1, 2, 2), LABELS)
    first, rest = _halves(LABELS, torch.arange(80))
    assert torch.bincount(LABELS[first]).tolist() == [25, 12, 4] and len(rest) == 39
    assert len(_stratified(LABELS, torch.arange(80), 12, 0)) == 12
    load_digits()
    stratify.stratified_batch(split.x, split.targets, 2, 0)
    assert len(calls) == 4
