"""Fitness tasks: a model on a dataset, its weights (a user's checkpoint, or a pretrain recipe), a prune target
and a brief fine-tune.

Tasks are written ``MODEL@DATASET[:key=value,...]`` (see ``task_spec``); the names of earlier versions
(``digits-vgg``, ``mnist-lenet5``...) are aliases.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path

import torch

from prunevo.fitness.data import TaskData, load_task_data
from prunevo.fitness.pretrain import PretrainRecipe, build_for, from_checkpoint, pretrained
from prunevo.primitives.operands import LayerStats
from prunevo.pruning.allocation import SearchSpec
from prunevo.pruning.calibration import Calibration, feature_bytes
from prunevo.pruning.groups import ChannelGroup
from prunevo.pruning.prunable import prunable_groups
from prunevo.pruning.ranking import PruneSpec
from prunevo.pruning.reconstruct import Reconstruction
from prunevo.pruning.reparam import fold_reparametrizations
from prunevo.training import FitConfig, top1
from prunevo.training.regimes import regime_of
from prunevo.utils import file_digest, stable_hash, state_hash
from prunevo.zoo.checkpoints import read_checkpoint, trained_input
from prunevo.zoo.models import is_model_file
from prunevo.zoo.stratify import stratified_batch

RECAL_BATCHES = 8  # BatchNorm recalibration batches of 256 images, unless a task says otherwise
# A calibration batch whose feature maps and gradients would take more than this is streamed in chunks of
# STREAM_CHUNK images (ResNet-50 at 224 px: about 70 MB an image, so 200 images would need 14 GB); the small
# nets of most fitness tasks keep them whole, which thousands of formulas reuse
FEATURE_MEMORY = 2 * 1024**3  # bytes
STREAM_CHUNK = 8
TRAIN_POOL = 2048  # training images a task that trains nothing keeps (at least its BatchNorm batches' worth)


@dataclass(frozen=True, kw_only=True)
class Task:
    """One fitness task.  The prune target is ``target_macs`` (share of the MACs kept, met on the fast
    conv/linear estimate) when set, else ``prune.ratio`` of the channels; ``prune.ranking`` and
    ``search`` give the allocation (uniform, global, or random search at the target's MACs).  The base net
    is the user's (``user_weights``: ``checkpoint``, or a whole-model file as ``model``; nothing is trained,
    and a checkpoint's image size and stem apply unless given) or else ``model`` trained by prunevo with
    ``pretrain`` (cached)."""

    name: str
    model: str
    dataset: str
    image_size: int | None = None
    checkpoint: str | None = None  # a user's weights (any form prunevo apply --checkpoint reads)
    stem: str = "auto"  # torchvision models' stem (zoo.models.STEMS): auto = cifar at <= 64 px
    prune: PruneSpec = field(default_factory=PruneSpec)
    target_macs: float | None = None
    finetune: FitConfig = field(default_factory=lambda: FitConfig(lr_schedule="cosine", batch_size=64))
    pretrain: PretrainRecipe = field(default_factory=PretrainRecipe)
    val_samples: int | None = None  # stratified validation images scored (None: the whole split)
    holdout_samples: int | None = None  # held-out images the re-scoring reads (None: at most 5,000)
    classes: int | None = None  # a proxy: only the images of the first this many classes (None: every class)
    seeds: int = 1  # fine-tune seeds; fitness reads the mean accuracy
    weight: float = 1.0  # weight in the geometric mean over co-evolved tasks
    recal_batches: int = RECAL_BATCHES  # batches of 256 training images that re-estimate BatchNorm statistics
    calibration_per_class: int = 20
    calibration_seed: int = 0
    # random configuration search at the target's MACs (None: select with ``prune``)
    search: SearchSpec | None = None
    # refit the layers that read removed channels by least squares on the calibration batch before BatchNorm is
    # re-estimated (``pruning.reconstruct``): the regime "one-shot + reconstruction"
    reconstruct: bool = False
    reconstruction: Reconstruction = field(default_factory=Reconstruction)

    def identity(self) -> str:
        """Everything that determines fitness on this task, hashed (fitness cache keys start with it).  A
        checkpoint counts by its content, not its path: a copied or moved file is the same task."""
        fields = asdict(self)
        if self.checkpoint is None:  # tasks from before the option keep their identity
            del fields["checkpoint"]
        else:
            fields["checkpoint"] = file_digest(self.checkpoint) or f"missing: {self.checkpoint}"
        if self.user_weights:  # nothing is trained: the recipe is not part of the task, the weights are
            del fields["pretrain"]
            if is_model_file(self.model):
                fields["model_file"] = file_digest(self.model) or f"missing: {self.model}"
        if self.stem == "auto":
            del fields["stem"]
        # PruneSpec.ranking was called "selection": hashed under that name, fitness caches keep their keys
        fields["prune"]["selection"] = fields["prune"].pop("ranking")
        del fields["name"], fields["weight"]  # an alias and its spelled-out form are the same task
        if fields["recal_batches"] == RECAL_BATCHES:  # tasks from before the option keep their identity
            del fields["recal_batches"]
        if fields["holdout_samples"] is None:  # likewise
            del fields["holdout_samples"]
        if fields["classes"] is None:
            del fields["classes"]
        if not self.reconstruct:  # tasks from before the option keep their identity
            del fields["reconstruct"], fields["reconstruction"]
        return stable_hash(fields)

    @property
    def user_weights(self) -> bool:
        """The base net is the user's (a checkpoint, or a whole-model file): nothing is trained."""
        return self.checkpoint is not None or is_model_file(self.model)

    @property
    def regime(self) -> str:
        """one-shot, short fine-tune or full fine-tune (see ``training.regimes``)."""
        return regime_of(self.finetune.epochs, self.reconstruct)

    @property
    def allocation(self) -> str:
        if self.search is not None:
            return "random-search"
        return "global" if self.prune.ranking == "global" else "uniform"

    def describe(self) -> str:
        """One line: what the task prunes, how hard, and how it fine-tunes."""
        target = f"{self.target_macs:.0%} MACs" if self.target_macs is not None else f"ratio {self.prune.ratio:g}"
        size = f" at {self.image_size} px" if self.image_size else ""
        train = f" on {self.finetune.max_samples}" if self.finetune.max_samples else ""
        val = f"val {self.val_samples}" if self.val_samples else "val all"
        val += f" of the first {self.classes} classes" if self.classes else ""
        seeds = f", {self.seeds} seeds" if self.seeds > 1 else ""
        seeds += f", BN recalibration {self.recal_batches} batches" if self.recal_batches != RECAL_BATCHES else ""
        seeds += ", layers reading removed channels refitted" if self.reconstruct else ""
        budget = (f"fine-tune {self.finetune.epochs:g} ep{train}, lr {self.finetune.lr:g}" if self.finetune.epochs > 0
                  else "no fine-tune")
        weights = f" from {self.checkpoint}" if self.checkpoint else ""
        return (f"{self.model}{weights} on {self.dataset}{size}: {target}, {self.allocation}; {self.regime} "
                f"({budget}); {val}{seeds}; weight {self.weight:g}")

    def roles(self, data: TaskData) -> dict[str, str]:
        """Which images each step reads, in words (``config.json`` and ``show`` print it)."""
        if self.user_weights:
            weights = f"{self.checkpoint or self.model} (the user's weights: nothing trained)"
        else:
            weights = f"trained by prunevo on the training split ({self.pretrain.budget.epochs:g} epochs, cached)"
        calibration = f"{self.calibration_per_class} training images per class, stratified, drawn from the seed"
        recal = f"{self.recal_batches} batches of 256 training images"
        roles = {"base net": weights, "calibration statistics": calibration, "BatchNorm re-estimation": recal}
        if self.reconstruct:
            roles["reconstruction"] = f"the calibration batch ({calibration})"
        if self.finetune.epochs > 0:
            train = f"{self.finetune.max_samples} " if self.finetune.max_samples else ""
            roles["fine-tune"] = f"{train}training images, {self.finetune.epochs:g} epochs"
        return {**roles, **data.roles}


@dataclass
class PreparedTask:
    """A task made ready for scoring: data in memory, base net trained, groups found, calibration batch drawn
    (criteria read their statistics from ``calibration``, computed on first use)."""

    task: Task
    data: TaskData
    base_state: dict[str, torch.Tensor]
    base_val_accuracy: float
    groups: list[ChannelGroup]
    calibration: Calibration
    example_input: torch.Tensor
    split: str = "val"  # what ``data.val`` holds: the validation split, or the held-out one (re-scoring)

    def build(self) -> torch.nn.Module:
        """An untrained copy of the task's network (load ``base_state`` into it for the base net)."""
        return build_for(self.task.model, self.data.input_shape, self.data.num_classes, self.task.stem)

    @property
    def stats(self) -> list[list[LayerStats]]:
        return self.calibration.stats

    @property
    def identity(self) -> str:
        """The task's identity and a hash of its base weights: what keys the fitness cache, so that a run
        resumed elsewhere never mixes fitness measured on two different base nets."""
        parts = [self.task.identity(), self.weights_hash]
        return stable_hash(parts if self.split == "val" else [*parts, self.split])

    @cached_property
    def weights_hash(self) -> str:
        return state_hash(self.base_state)

    def redrawn(self, seed: int, seeds: int | None = None) -> "PreparedTask":
        """The same task, data and base net with its own stratified calibration batch drawn from ``seed``: a
        task of its own (its identity, so its cache keys, BatchNorm re-estimation batches and fine-tune seed,
        differ); ``seeds`` replaces the number of fine-tune seeds when given.  Its statistics are computed on
        first use."""
        task = replace(self.task, calibration_seed=seed, **({} if seeds is None else {"seeds": seeds}))
        x, y = stratified_batch(self.data.train.x, self.data.train.targets, task.calibration_per_class, seed)
        calibration = Calibration(self.calibration.model, self.groups, x, y, self.data.num_classes,
                                  consumers=task.prune.domino == "io", batch_size=self.calibration.batch_size)
        return replace(self, task=task, calibration=calibration)


def _unseen_val(task: Task, meta: dict) -> bool:
    """Whether the task's weights never trained on its validation split: prunevo trained them (``prunevo train``
    and base nets hold it out), or the checkpoint says prunevo trained it on this dataset."""
    if not task.user_weights:
        return True
    trained_on = meta.get("dataset")
    if not isinstance(trained_on, str):
        return False  # another tool's checkpoint: it may have trained on every training file

    def where(name: str) -> str:
        return str(Path(name.split(":", 1)[1]).resolve()) if name.startswith("imagefolder:") else name
    return where(trained_on) == where(task.dataset)


def train_pool(task: Task) -> int | None:
    """How many training images ``task`` needs in memory: all of them (None) when it trains (a base net, a
    fine-tune), else a stratified pool for the calibration batch and BatchNorm re-estimation."""
    trains = (not task.user_weights or task.finetune.epochs > 0
              or (task.search is not None and task.search.finetune_epochs > 0))
    return None if trains else max(TRAIN_POOL, 256 * task.recal_batches)


def resolve_checkpoint(task: Task) -> tuple[Task, dict]:
    """``task`` with the image size and stem its checkpoint was trained for, where the task leaves them open,
    and the checkpoint's metadata (empty without one, or for another tool's checkpoint).  Raises ModelError for
    a missing or unreadable checkpoint."""
    if task.checkpoint is None:
        return task, {}
    meta = read_checkpoint(task.checkpoint)[1]
    size, stem = trained_input(meta)
    changes = {}
    if task.image_size is None and size:
        changes["image_size"] = size
    if task.stem == "auto" and stem:
        changes["stem"] = stem
    return replace(task, **changes), meta


def prepare_task(task: Task, data_root: str | os.PathLike | None = None, *, cache_dir: Path | None = None,
                 data: TaskData | None = None, progress: bool | None = None) -> PreparedTask:
    """``task`` with its data, base net (the task's checkpoint, or trained now if not cached; ``progress``: its
    bar, or plain lines in a log; False: none), parameter groups and calibration statistics.  Raises DataError or
    ModelError."""
    task, meta = resolve_checkpoint(task)
    data = data or load_task_data(task.model, task.dataset, task.image_size, task.val_samples, data_root, cache_dir,
                                  holdout_samples=task.holdout_samples, stem=task.stem,
                                  unseen_val=_unseen_val(task, meta), classes=task.classes,
                                  train_pool=train_pool(task))
    if task.checkpoint is not None:
        model = from_checkpoint(task.model, data, task.checkpoint, task.stem)
    elif task.user_weights:  # a whole-model file holds its weights
        model = build_for(task.model, data.input_shape, data.num_classes, task.stem).eval()
    else:
        model = pretrained(task.model, data, task.pretrain, cache_dir, progress=progress, stem=task.stem)
    fold_reparametrizations(model)  # weight/spectral normalization: after the checkpoint is loaded
    example = data.train.x[:1]
    groups, _ = prunable_groups(model, example)
    x, y = stratified_batch(data.train.x, data.train.targets, task.calibration_per_class, task.calibration_seed)
    chunk = STREAM_CHUNK if feature_bytes(model, groups, example) * len(x) > FEATURE_MEMORY else None
    calibration = Calibration(model, groups, x, y, data.num_classes, consumers=task.prune.domino == "io",
                              batch_size=chunk)
    return PreparedTask(task, data, {k: v.clone() for k, v in model.state_dict().items()},
                        top1(model, data.val), groups, calibration, example)
