"""Datasets as in-memory tensors with fixed train/validation/test splits.

``digits`` (scikit-learn's embedded handwritten digits) needs nothing on disk.  ``mnist`` and
``fashion-mnist`` are read offline from a ``data_root`` in torchvision's layout (``MNIST/raw/*.gz``...);
the read-only root is never written to: compressed files are verified and extracted into our cache.
"""
from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prunevo.errors import DataError
from prunevo.utils import atomic_write_bytes, default_cache_dir, state_hash
from prunevo.zoo.registry import dataset_specs, find_dataset
from prunevo.zoo.stratify import stratified_split

SPLIT_SEED = 0  # splits are part of a dataset's identity, not of a run


@dataclass
class Splits:
    """Train (pretraining and fine-tuning), validation (fitness) and test (final reports only)."""

    name: str
    num_classes: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])

    def fingerprint(self) -> str:
        """A hash of the training and validation images and labels, every value in order."""
        return state_hash({"train_x": self.train_x, "train_y": self.train_y, "val_x": self.val_x, "val_y": self.val_y})


def _standardize(splits: Splits) -> Splits:
    mean, std = splits.train_x.mean(), splits.train_x.std().clamp_min(1e-8)
    for attr in ("train_x", "val_x", "test_x"):
        setattr(splits, attr, (getattr(splits, attr) - mean) / std)
    return splits


def load_digits() -> Splits:
    """scikit-learn's 1,797 8x8 digits: 60% train, 20% validation, 20% test (stratified)."""
    from sklearn.datasets import load_digits as sk_digits

    data = sk_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = data.target.astype(np.int64)
    train, val, test = stratified_split(y, (0.6, 0.2, 0.2), SPLIT_SEED)
    yt = torch.from_numpy(y)
    return _standardize(Splits("digits", 10, x[train], yt[train], x[val], yt[val], x[test], yt[test]))


_TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def _stage_raw_files(dataset_cls, data_root: Path, cache_dir: Path) -> Path:
    """A root where torchvision finds extracted files, without writing under ``data_root``."""
    folder = dataset_cls.__name__
    raw = data_root / folder / "raw"
    names = [Path(url).name for url, _ in dataset_cls.resources]
    if all((raw / n.removesuffix(".gz")).exists() for n in names):
        return data_root
    missing = [n for n in names if not (raw / n).exists()]
    if missing:
        raise DataError(
            f"{folder} not found under {data_root}: missing {', '.join(missing)} in {raw}; "
            f"{{param:data_root}} must point at a folder in torchvision's layout ({folder}/raw/*.gz)"
        )
    staged = cache_dir / "data"
    out_raw = staged / folder / "raw"
    out_raw.mkdir(parents=True, exist_ok=True)
    for (url, md5) in dataset_cls.resources:
        name = Path(url).name
        target = out_raw / name.removesuffix(".gz")
        if target.exists():
            continue
        payload = (raw / name).read_bytes()
        if md5 and hashlib.md5(payload).hexdigest() != md5:
            raise DataError(f"{raw / name} is corrupt: its md5 does not match torchvision's record ({md5})")
        atomic_write_bytes(target, gzip.decompress(payload))
    return staged


def load_torchvision_digits(name: str, data_root: str | os.PathLike | None, cache_dir: Path | None = None,
                            download: bool = False) -> Splits:
    """MNIST or Fashion-MNIST: official test split; validation = 10% of the official train split.

    With ``download`` (and a network), missing files are fetched by torchvision into ``data_root``.
    """
    import torchvision

    if data_root is None:
        raise DataError(f"dataset {name!r} needs {{param:data_root}}: a folder holding "
                        f"{_TORCHVISION_FOLDERS[name]}/raw/*.gz")
    root = Path(data_root)
    cls = torchvision.datasets.MNIST if name == "mnist" else torchvision.datasets.FashionMNIST
    if download:
        try:
            cls(str(root), train=True, download=True)
        except Exception as exc:  # network errors come in many types
            raise DataError(f"downloading {name} into {root} failed: {exc}") from None
    if not root.is_dir():
        raise DataError(f"{{param:data_root}} {root} is not a directory")
    staged = _stage_raw_files(cls, root, cache_dir or default_cache_dir())
    try:
        train = cls(str(staged), train=True, download=False)
        test = cls(str(staged), train=False, download=False)
    except RuntimeError as exc:
        raise DataError(f"{name} under {root} could not be read: {exc}") from None
    x = train.data.float().unsqueeze(1) / 255.0
    y = train.targets.long()
    tr, va = stratified_split(y, (0.9, 0.1), SPLIT_SEED)
    splits = Splits(name, 10, x[tr], y[tr], x[va], y[va], test.data.float().unsqueeze(1) / 255.0, test.targets.long())
    return _standardize(splits)


def in_memory_datasets() -> list[str]:
    """The registered datasets fitness can hold whole in memory (``zoo.registry``: those with ``splits``)."""
    return [spec.name for spec in dataset_specs() if spec.splits is not None]


def load_dataset(name: str, data_root: str | os.PathLike | None = None, cache_dir: Path | None = None) -> Splits:
    """The in-memory splits of a registered dataset that has them.  Raises DataError naming the allowed ones."""
    spec = find_dataset(name)
    if spec is None or spec.splits is None:
        raise DataError(f"unknown dataset {name!r}; allowed: {', '.join(in_memory_datasets())}")
    return spec.splits(name, data_root, cache_dir)


