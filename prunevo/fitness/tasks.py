"""Fitness tasks: dataset + network + pretrain recipe + prune spec + fine-tune budget.

A task is named ``DATASET-NET`` (``digits-vgg``, ``mnist-lenet5``, ``fashion-mnist-resnet``...); its
defaults come from the dataset, and any field can be overridden with ``dataclasses.replace``.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path

import torch

from prunevo.errors import PrunevoError
from prunevo.fitness.pretrain import PretrainRecipe, pretrained
from prunevo.fitness.training import TrainBudget, accuracy
from prunevo.primitives.operands import LayerStats
from prunevo.pruning.allocation import SearchSpec
from prunevo.pruning.calibration import Calibration
from prunevo.pruning.groups import ChannelGroup, find_groups
from prunevo.pruning.selection import PruneSpec
from prunevo.pruning.statistics import stratified_batch
from prunevo.utils import stable_hash, state_hash
from prunevo.zoo.datasets import DATASETS, Splits, load_dataset
from prunevo.zoo.nets import SMALL_NETS

DEFAULT_TASKS = ("digits-vgg", "digits-resnet")


@dataclass(frozen=True)
class Task:
    name: str
    dataset: str
    net: str
    prune: PruneSpec = field(default_factory=PruneSpec)
    finetune: TrainBudget = field(default_factory=TrainBudget)
    pretrain: PretrainRecipe = field(default_factory=PretrainRecipe)
    weight: float = 1.0  # weight in the geometric mean over co-evolved tasks
    calibration_per_class: int = 20
    calibration_seed: int = 0
    # random configuration search at the MACs of the uniform selection (None: select with ``prune``)
    search: SearchSpec | None = None

    def identity(self) -> str:
        """Everything that determines fitness on this task, hashed (fitness cache keys start with it)."""
        fields = asdict(self)
        if fields["search"] is None:
            del fields["search"]  # tasks without search keep the identity (and cached fitness) they had
        return stable_hash(fields)


# Budgets per dataset: aggressive enough that criteria differ, short enough for evolution on a laptop.
_DATASET_DEFAULTS = {
    "digits": dict(
        prune=PruneSpec(ratio=0.75),
        finetune=TrainBudget(epochs=0.5, lr=0.02, batch_size=64),
        pretrain=PretrainRecipe(TrainBudget(epochs=40, lr=0.05, batch_size=64, weight_decay=1e-3)),
    ),
    "mnist": dict(
        prune=PruneSpec(ratio=0.75),
        finetune=TrainBudget(epochs=1.0, lr=0.02, batch_size=128, max_samples=4000),
        pretrain=PretrainRecipe(TrainBudget(epochs=2, lr=0.05, batch_size=128)),
    ),
}
_DATASET_DEFAULTS["fashion-mnist"] = _DATASET_DEFAULTS["mnist"]


def available_tasks() -> list[str]:
    return [f"{d}-{n}" for d in DATASETS for n in SMALL_NETS]


def make_task(name: str, **overrides) -> Task:
    """The task called ``name`` with its dataset's defaults, then ``overrides`` (dataclass fields)."""
    dataset, _, net = name.rpartition("-")
    if dataset not in DATASETS or net not in SMALL_NETS:
        raise PrunevoError(f"unknown task {name!r}; allowed: {', '.join(available_tasks())}")
    task = Task(name=name, dataset=dataset, net=net, **_DATASET_DEFAULTS[dataset])
    return replace(task, **overrides) if overrides else task


@dataclass
class PreparedTask:
    """A task made ready for scoring: data loaded, base net trained, groups found, calibration batch drawn
    (criteria read their statistics from ``calibration``, computed on first use)."""

    task: Task
    splits: Splits
    base_state: dict[str, torch.Tensor]
    base_val_accuracy: float
    groups: list[ChannelGroup]
    calibration: Calibration
    example_input: torch.Tensor

    @property
    def stats(self) -> list[list[LayerStats]]:
        return self.calibration.stats

    @property
    def identity(self) -> str:
        """The task's identity and a hash of its base weights: what keys the fitness cache, so that a run
        resumed elsewhere never mixes fitness measured on two different base nets."""
        return stable_hash([self.task.identity(), self.weights_hash])

    @cached_property
    def weights_hash(self) -> str:
        return state_hash(self.base_state)


def prepare_task(task: Task, data_root: str | os.PathLike | None = None, cache_dir: Path | None = None,
                 splits: Splits | None = None) -> PreparedTask:
    splits = splits or load_dataset(task.dataset, data_root, cache_dir)
    model = pretrained(task.net, splits, task.pretrain, cache_dir)
    example = splits.train_x[:1]
    groups = find_groups(model, example)
    x, y = stratified_batch(splits.train_x, splits.train_y, task.calibration_per_class, task.calibration_seed)
    calibration = Calibration(model, groups, x, y, splits.num_classes, consumers=task.prune.domino == "io")
    return PreparedTask(task, splits, {k: v.clone() for k, v in model.state_dict().items()},
                        accuracy(model, splits.val_x, splits.val_y), groups, calibration, example)
