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
half each, so that fitness never reads an image the model was trained on.  JPEG folders are slow to decode,
so their rendering is cached on disk, keyed by the folder's file list and the image size.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from prunevo.errors import DataError
from prunevo.zoo.stratify import stratified_indices, stratified_split
from prunevo.utils import atomic_torch_save, default_cache_dir, state_hash
from prunevo.zoo.images import ImageData, TensorImages, load_image_data
from prunevo.zoo.models import build_model, input_channels, needs_channels

log = logging.getLogger(__name__)
RENDER_VERSION = 2  # bump when the rendering of image folders changes
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


def _in_memory(dataset: Dataset, workers: int) -> TensorImages:
    if isinstance(dataset, TensorImages) and dataset.transform is None:
        return dataset
    xs, ys = [], []
    for x, y in DataLoader(dataset, batch_size=256, num_workers=workers):
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


SPLITS = ("train", "val", "test")


def _render(data: ImageData, cache_dir: Path, workers: int) -> dict[str, TensorImages]:
    """train, val and (when the dataset has its own) test split as in-memory tensors."""
    sources = {"train": data.train_plain, "val": data.val}
    if data.test is not data.val:
        sources["test"] = data.test
    if not data.name.startswith("imagefolder:"):
        return {k: _in_memory(v, 0) for k, v in sources.items()}
    path = cache_dir / "data" / f"rendered-{_folder_key(data)}.pt"
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            return {k: TensorImages(saved[f"{k}_x"].float(), saved[f"{k}_y"]) for k in SPLITS if f"{k}_x" in saved}
        except Exception as exc:  # a damaged cache entry is rebuilt, never trusted
            log.warning("rendered images %s are unreadable (%s); rendering again", path, exc)
    log.info("rendering %s at %s px into %s (once)", data.name, data.input_shape[1], path)
    rendered = {k: _in_memory(v, workers) for k, v in sources.items()}
    payload = {}
    for k, split in rendered.items():
        payload[f"{k}_x"], payload[f"{k}_y"] = split.x.half(), split.targets
    atomic_torch_save(path, payload)
    return {k: TensorImages(payload[f"{k}_x"].float(), split.targets) for k, split in rendered.items()}


def _stratified(split: TensorImages, count: int, seed: int) -> TensorImages:
    per_class = -(-count // len(torch.unique(split.targets)))
    order = stratified_indices(split.targets, per_class, seed)[:count]
    return TensorImages(split.x[order], split.targets[order])


def _halves(split: TensorImages) -> tuple[TensorImages, TensorImages]:
    """A stratified half of ``split`` and the rest (disjoint: ``stratified_split`` cuts one permutation)."""
    first, rest = stratified_split(split.targets, (0.5, 0.5), 0)
    return TensorImages(split.x[first], split.targets[first]), TensorImages(split.x[rest], split.targets[rest])


def _first_classes(split: TensorImages, classes: int) -> TensorImages:
    keep = split.targets < classes
    return TensorImages(split.x[keep], split.targets[keep])


def _count(n: int) -> str:
    return f"{n:,}"


def _fitness_and_held_out(dataset: str, splits: dict[str, TensorImages], carved: bool,
                          unseen_val: bool) -> tuple[TensorImages, TensorImages, str, str]:
    """(fitness images, held-out images, where each comes from in words): disjoint by construction."""
    val, test = splits["val"], splits.get("test")
    if carved and not unseen_val:
        if test is None:
            raise DataError(f"{dataset} has no split that weights trained on all of its training files cannot have "
                            f"seen (its validation split is carved from them, and it has no test split); allowed: "
                            f"an image folder with a val/ or test/ folder, or weights from 'prunevo train', which "
                            f"holds the validation split out")
        fitness, held = _halves(test)
        return fitness, held, "half of the test split", ("the other half of the test split (the validation split "
                                                         "is carved from the training files, which these weights "
                                                         "may have seen)")
    source = "the validation split" + (" (carved by prunevo from the training files)" if carved else "")
    if test is None:  # no separate test split: half of the validation split is held out
        fitness, held = _halves(val)
        return fitness, held, f"half of {source}", "the other half of the validation split"
    return val, test, source, "the test split"


def load_task_data(model: str, dataset: str, image_size: int | None, val_samples: int | None,
                   data_root: str | os.PathLike | None = None, cache_dir: Path | None = None,
                   workers: int = 2, holdout_samples: int | None = None, stem: str = "auto",
                   unseen_val: bool = True, classes: int | None = None) -> TaskData:
    """``dataset`` for ``model`` (its channel count) at ``image_size``, with at most ``val_samples`` stratified
    fitness images (all of them when None) and at most ``holdout_samples`` (default ``HOLDOUT_MAX``) stratified
    held-out ones, never the same image in both.  ``unseen_val``: the weights never trained on the validation
    split (False for a user's checkpoint that may have trained on every training file: see the module
    docstring).  ``classes``: only the images of the first this many classes (a cheaper proxy).  Raises
    DataError when the data is missing, or when no split is left that such weights cannot have trained on."""
    cache_dir = Path(cache_dir or default_cache_dir())
    load = dict(data_root=data_root, image_size=image_size, cache_dir=cache_dir)
    data = load_image_data(dataset, channels=needs_channels(model), **load)
    wanted = input_channels(build_model(model, data.num_classes, data.input_shape, stem), data.input_shape[1])
    if wanted != data.input_shape[0]:  # a model that reads another channel count
        data = load_image_data(dataset, channels=wanted, **load)
    splits = _render(data, cache_dir, workers)
    if classes is not None:
        if classes > data.num_classes:
            raise DataError(f"{dataset} has {data.num_classes} classes; allowed: classes <= {data.num_classes}")
        splits = {k: _first_classes(v, classes) for k, v in splits.items()}
    train = splits["train"]
    val, holdout, fitness_from, held_from = _fitness_and_held_out(dataset, splits, data.val_carved, unseen_val)
    available = len(val)
    if val_samples is not None and val_samples < len(val):
        val = _stratified(val, val_samples, 0)
    cap = holdout_samples or HOLDOUT_MAX
    held_available = len(holdout)
    if len(holdout) > cap:
        holdout = _stratified(holdout, cap, 1)
    which = f" of the first {classes} classes" if classes else ""
    size = f", {data.input_shape[1]} px"
    roles = {"fitness": f"{_count(len(val))} of {_count(available)} images{which} of {fitness_from}, stratified by "
                        f"class{size}",
             "held-out": f"{_count(len(holdout))} of {_count(held_available)} images{which} of {held_from}, "
                         f"stratified by class{size}"}
    return TaskData(data.name, data.num_classes, data.input_shape, train, val, holdout, roles)
