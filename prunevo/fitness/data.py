"""A fitness task's data: the transfer side's datasets, held in memory as tensors.

Any dataset ``prunevo apply`` reads (``digits``, ``mnist``, ``imagefolder:PATH``...) can serve fitness.  Which
images each step reads is fixed here, and ``TaskData.roles`` says it in words (``config.json`` and ``show``
print it):

- pretraining, the brief fine-tunes, BatchNorm re-estimation and the calibration batch read the un-augmented
  *training* split;
- fitness reads a class-stratified part of the *validation* split;
- the final re-scoring and the verdict read a disjoint *held-out* part: the test split where the dataset has
  one, otherwise the other half of the validation split.

Weights trained outside prunevo (a task's ``checkpoint=``) may have seen every training file of the dataset,
and some validation splits are carved by prunevo out of those files (MNIST's, CIFAR's, an image folder
without ``val/``): for such weights fitness and the verdict share the dataset's own held-out split instead,
half each, so that fitness never reads an image the model was trained on.

Which images are read is decided from the labels alone, before any image is decoded; only those are rendered
(at the task's image size) and held in memory, so an ImageNet-size folder costs what a task reads, not what the
folder holds.  JPEG folders are slow to decode, so their rendering is cached on disk, keyed by the folder's
file list, the image size and the images.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from prunevo.errors import DataError
from prunevo.utils import atomic_torch_save, default_cache_dir, state_hash
from prunevo.zoo.images import ImageData, TensorImages, labels_of, load_image_data
from prunevo.zoo.models import build_model, input_channels, needs_channels
from prunevo.zoo.stratify import stratified_indices, stratified_split

log = logging.getLogger(__name__)
RENDER_VERSION = 3  # bump when the rendering of image folders changes
HOLDOUT_MAX = 5000  # held-out images used by re-scoring at most (a stratified subset)


@dataclass
class TaskData:
    """In-memory training and validation images of one fitness task."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    train: TensorImages
    val: TensorImages
    holdout: TensorImages  # never used for fitness: the final re-scoring reads it
    # which images fitness ("fitness") and the re-scoring and verdict ("held-out") read, in words
    roles: dict[str, str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """A hash of the training images and labels, every value in order: what a base net depends on (reordered
        or relabelled data is other data)."""
        return state_hash({"x": self.train.x, "y": self.train.targets})


def _in_memory(dataset: Dataset, index: torch.Tensor, workers: int) -> TensorImages:
    """The images ``index`` of ``dataset`` (un-augmented, adapted to the task's size and channels) as tensors."""
    if isinstance(dataset, TensorImages) and dataset.transform is None:
        return TensorImages(dataset.x[index], dataset.targets[index])
    xs, ys = [], []
    for x, y in DataLoader(Subset(dataset, index.tolist()), batch_size=256, num_workers=workers):
        xs.append(x)
        ys.append(y)
    return TensorImages(torch.cat(xs), torch.cat(ys).long())


def _folder_key(data: ImageData) -> str:
    """What an image folder's rendering depends on: its files (names and sizes) and the output shape."""
    h = hashlib.sha256(f"{RENDER_VERSION}|{data.name}|{data.input_shape}".encode())
    for split in (data.train_plain, data.val):
        base = split.dataset if hasattr(split, "dataset") else split
        for path, _ in getattr(base, "samples", []):
            h.update(f"{path}|{os.path.getsize(path)}".encode())
        h.update(str(getattr(split, "indices", "all")).encode())
    return h.hexdigest()[:20]


def _render(data: ImageData, source: str, index: torch.Tensor, cache_dir: Path, workers: int) -> TensorImages:
    """The images ``index`` of split ``source`` as in-memory tensors; only they are decoded.  An image folder's
    rendering is cached on disk (half precision), keyed by the folder, the split and the images."""
    dataset = _sources(data)[source]
    if not data.name.startswith("imagefolder:"):
        return _in_memory(dataset, index, 0)
    key = hashlib.sha256(f"{_folder_key(data)}|{source}|".encode() + index.numpy().tobytes()).hexdigest()[:20]
    path = cache_dir / "data" / f"rendered-{key}.pt"
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            return TensorImages(saved["x"].float(), saved["y"])
        except Exception as exc:  # a damaged cache entry is rebuilt, never trusted
            log.warning("rendered images %s are unreadable (%s); rendering again", path, exc)
    log.info("rendering %d images of %s (%s) at %s px into %s (once)", len(index), data.name, source,
             data.input_shape[1], path)
    rendered = _in_memory(dataset, index, workers)
    half = rendered.x.half()
    atomic_torch_save(path, {"x": half, "y": rendered.targets})
    return TensorImages(half.float(), rendered.targets)


def _sources(data: ImageData) -> dict[str, Dataset]:
    """train (un-augmented), val and, when the dataset has its own, test."""
    sources = {"train": data.train_plain, "val": data.val}
    if data.test is not data.val:
        sources["test"] = data.test
    return sources


def _stratified(labels: torch.Tensor, index: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """``count`` of ``index`` (positions in a split with ``labels``), the same number from every class."""
    mine = labels[index]
    per_class = -(-count // len(torch.unique(mine)))
    return index[stratified_indices(mine, per_class, seed)[:count]]


def _halves(labels: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A stratified half of ``index`` and the rest (disjoint: ``stratified_split`` cuts one permutation)."""
    first, rest = stratified_split(labels[index], (0.5, 0.5), 0)
    return index[first], index[rest]


def _count(n: int) -> str:
    return f"{n:,}"


Part = tuple[str, torch.Tensor]  # (split, positions in it)


def _fitness_and_held_out(dataset: str, base: dict[str, torch.Tensor], labels: dict[str, torch.Tensor],
                          carved: bool, unseen_val: bool) -> tuple[Part, Part, str, str]:
    """(fitness images, held-out images, where each comes from in words): disjoint by construction."""
    if carved and not unseen_val:
        if "test" not in base:
            raise DataError(f"{dataset} has no split that weights trained on all of its training files cannot have "
                            f"seen (its validation split is carved from them, and it has no test split); allowed: "
                            f"an image folder with a val/ or test/ folder, or weights from 'prunevo train', which "
                            f"holds the validation split out")
        fitness, held = _halves(labels["test"], base["test"])
        return ("test", fitness), ("test", held), "half of the test split", (
            "the other half of the test split (the validation split is carved from the training files, which these "
            "weights may have seen)")
    source = "the validation split" + (" (carved by prunevo from the training files)" if carved else "")
    if "test" not in base:  # no separate test split: half of the validation split is held out
        fitness, held = _halves(labels["val"], base["val"])
        return ("val", fitness), ("val", held), f"half of {source}", "the other half of the validation split"
    return ("val", base["val"]), ("test", base["test"]), source, "the test split"


def load_task_data(model: str, dataset: str, image_size: int | None, val_samples: int | None,
                   data_root: str | os.PathLike | None = None, cache_dir: Path | None = None,
                   workers: int = 2, holdout_samples: int | None = None, stem: str = "auto",
                   unseen_val: bool = True, classes: int | None = None, train_pool: int | None = None) -> TaskData:
    """``dataset`` for ``model`` (its channel count) at ``image_size``, with at most ``val_samples`` stratified
    fitness images (all of them when None) and at most ``holdout_samples`` (default ``HOLDOUT_MAX``) stratified
    held-out ones, never the same image in both.  ``unseen_val``: the weights never trained on the validation
    split (False for a user's checkpoint that may have trained on every training file: see the module
    docstring).  ``classes``: only the images of the first this many classes (a cheaper proxy).
    ``train_pool``: at most this many stratified training images (a task that trains nothing needs a
    calibration batch and BatchNorm re-estimation batches only); None: all of them.  Only the images a task
    reads are decoded and held in memory.  Raises DataError when the data is missing, or when no split is
    left that such weights cannot have trained on."""
    cache_dir = Path(cache_dir or default_cache_dir())
    load = dict(data_root=data_root, image_size=image_size, cache_dir=cache_dir)
    data = load_image_data(dataset, channels=needs_channels(model), **load)
    wanted = input_channels(build_model(model, data.num_classes, data.input_shape, stem), data.input_shape[1])
    if wanted != data.input_shape[0]:  # a model that reads another channel count
        data = load_image_data(dataset, channels=wanted, **load)
    labels = {k: labels_of(v) for k, v in _sources(data).items()}
    base = {k: torch.arange(len(v)) for k, v in labels.items()}
    if classes is not None:
        if classes > data.num_classes:
            raise DataError(f"{dataset} has {data.num_classes} classes; allowed: classes <= {data.num_classes}")
        base = {k: torch.nonzero(labels[k] < classes).flatten() for k in base}
    fitness, held, fitness_from, held_from = _fitness_and_held_out(dataset, base, labels, data.val_carved,
                                                                   unseen_val)
    available, held_available = len(fitness[1]), len(held[1])
    if val_samples is not None and val_samples < available:
        fitness = (fitness[0], _stratified(labels[fitness[0]], fitness[1], val_samples, 0))
    cap = holdout_samples or HOLDOUT_MAX
    if held_available > cap:
        held = (held[0], _stratified(labels[held[0]], held[1], cap, 1))
    train = base["train"]
    if train_pool is not None and len(train) > train_pool:
        train = _stratified(labels["train"], train, train_pool, 2).sort().values
    which = f" of the first {classes} classes" if classes else ""
    size = f", {data.input_shape[1]} px"
    roles = {"fitness": f"{_count(len(fitness[1]))} of {_count(available)} images{which} of {fitness_from}, "
                        f"stratified by class{size}",
             "held-out": f"{_count(len(held[1]))} of {_count(held_available)} images{which} of {held_from}, "
                         f"stratified by class{size}"}
    if len(train) < len(base["train"]):
        roles["training images"] = (f"{_count(len(train))} of {_count(len(base['train']))}, stratified by class "
                                    f"(nothing is trained: calibration and BatchNorm re-estimation draw from them)")
    render = lambda part: _render(data, part[0], part[1], cache_dir, workers)  # noqa: E731
    return TaskData(data.name, data.num_classes, data.input_shape, render(("train", train)), render(fitness),
                    render(held), roles)
