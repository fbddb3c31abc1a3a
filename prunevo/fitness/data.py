"""A fitness task's data: the transfer side's datasets, held in memory as tensors.

Any dataset ``prunevo apply`` reads (``digits``, ``mnist``, ``imagefolder:PATH``...) can serve fitness.
Its un-augmented training split (pretraining and the brief fine-tunes) and a class-stratified part of its
validation split (the fitness score) are rendered once at the task's image size.  JPEG folders are slow
to decode, so their rendering is cached on disk, keyed by the folder's file list and the image size.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from prunevo.errors import DataError
from prunevo.pruning.statistics import stratified_indices
from prunevo.utils import atomic_torch_save, default_cache_dir
from prunevo.zoo.images import ImageData, TensorImages, labels_of, load_image_data
from prunevo.zoo.models import build_model, input_channels, needs_channels

log = logging.getLogger(__name__)
RENDER_VERSION = 1  # bump when the rendering of image folders changes


@dataclass
class TaskData:
    """In-memory training and validation images of one fitness task."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    train: TensorImages
    val: TensorImages

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for t in (self.train.x, self.train.targets, self.val.x, self.val.targets):
            h.update(str(tuple(t.shape)).encode())
            h.update(t.double().sum().numpy().tobytes())
        return h.hexdigest()[:16]


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


def _render(data: ImageData, cache_dir: Path, workers: int) -> tuple[TensorImages, TensorImages]:
    if not data.name.startswith("imagefolder:"):
        return _in_memory(data.train_plain, 0), _in_memory(data.val, 0)
    path = cache_dir / "data" / f"rendered-{_folder_key(data)}.pt"
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            return (TensorImages(saved["train_x"].float(), saved["train_y"]),
                    TensorImages(saved["val_x"].float(), saved["val_y"]))
        except Exception as exc:  # a damaged cache entry is rebuilt, never trusted
            log.warning("rendered images %s are unreadable (%s); rendering again", path, exc)
    log.info("rendering %s at %s px into %s (once)", data.name, data.input_shape[1], path)
    train, val = _in_memory(data.train_plain, workers), _in_memory(data.val, workers)
    atomic_torch_save(path, {"train_x": train.x.half(), "train_y": train.targets,
                             "val_x": val.x.half(), "val_y": val.targets})
    return (TensorImages(train.x.half().float(), train.targets),  # what a later load reads back
            TensorImages(val.x.half().float(), val.targets))


def load_task_data(model: str, dataset: str, image_size: int | None, val_samples: int | None,
                   data_root: str | os.PathLike | None = None, cache_dir: Path | None = None,
                   workers: int = 2) -> TaskData:
    """``dataset`` for ``model`` (its channel count) at ``image_size``, with ``val_samples`` stratified
    validation images (all of them when None)."""
    cache_dir = Path(cache_dir or default_cache_dir())
    load = dict(data_root=data_root, image_size=image_size, cache_dir=cache_dir)
    data = load_image_data(dataset, channels=needs_channels(model), **load)
    wanted = input_channels(build_model(model, data.num_classes, data.input_shape))
    if wanted != data.input_shape[0]:  # a model that reads another channel count
        data = load_image_data(dataset, channels=wanted, **load)
    train, val = _render(data, cache_dir, workers)
    if val_samples is not None:
        if val_samples > len(val):
            raise DataError(f"{dataset} has {len(val)} validation images; allowed: val <= {len(val)}")
        per_class = -(-val_samples // data.num_classes)
        order = stratified_indices(labels_of(val), per_class, 0)[:val_samples]
        val = TensorImages(val.x[order], val.targets[order])
    return TaskData(data.name, data.num_classes, data.input_shape, train, val)
