"""Readers for CIFAR-10/100 (python pickle batches) and SVHN (.mat), in torchvision's folder layout.

The pickles are read with an unpickler that admits only the numpy types the format uses, so a
tampered file cannot run code.  torchvision downloads them when asked (``download=True``).
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch

from prunevo.errors import DataError

_CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels"),
}
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
}


class _DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a dataset file")
        return super().find_class(module, name)


def _read_batch(path: Path) -> dict:
    try:
        return _DataOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as exc:  # a corrupt or hostile file: one clear message
        raise DataError(f"{path} is not a readable CIFAR batch: {exc}") from None


def _download(name: str, root: Path) -> None:
    import torchvision

    cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100,
           "svhn": torchvision.datasets.SVHN}[name]
    try:
        if name == "svhn":
            for split in ("train", "test"):
                cls(str(root), split=split, download=True)
        else:
            cls(str(root), train=True, download=True)
    except Exception as exc:  # network errors come in many types
        raise DataError(f"downloading {name} into {root} failed: {exc}") from None


def _to_images(data: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)).float() / 255.0


def load_cifar(name: str, root: Path, download: bool = False) -> tuple:
    """((train_x, train_y), (test_x, test_y)) as float images in [0, 1] and long labels."""
    folder, train_files, test_files, label_key = _CIFAR[name]
    if download:
        _download(name, root)
    base = root / folder
    missing = [f for f in train_files + test_files if not (base / f).exists()]
    if missing:
        raise DataError(f"{name} not found: missing {', '.join(missing)} in {base}; "
                        f"{{param:data_root}} must hold {folder}/ (torchvision's layout), or add {{param:download}}")
    parts = []
    for files in (train_files, test_files):
        batches = [_read_batch(base / f) for f in files]
        try:
            x = np.concatenate([b[b"data"] for b in batches])
            y = np.concatenate([np.asarray(b[label_key]) for b in batches])
        except KeyError as exc:
            raise DataError(f"a {name} batch in {base} lacks the key {exc}") from None
        parts.append((_to_images(x), torch.from_numpy(y.astype(np.int64))))
    return tuple(parts)


def load_svhn(root: Path, download: bool = False) -> tuple:
    """SVHN's train_32x32.mat and test_32x32.mat (label 10 is the digit 0)."""
    from scipy.io import loadmat

    if download:
        _download("svhn", root)
    parts = []
    for split in ("train", "test"):
        path = root / f"{split}_32x32.mat"
        if not path.exists():
            raise DataError(f"svhn not found: missing {path}; {{param:data_root}} must hold train_32x32.mat and "
                            f"test_32x32.mat, or add {{param:download}}")
        try:
            mat = loadmat(str(path))
            x = torch.from_numpy(np.transpose(mat["X"], (3, 2, 0, 1)).copy()).float() / 255.0
            y = torch.from_numpy(mat["y"].astype(np.int64).reshape(-1) % 10)
        except Exception as exc:  # scipy raises several types for damaged files
            raise DataError(f"{path} is not a readable SVHN file: {exc}") from None
        parts.append((x, y))
    return tuple(parts)
