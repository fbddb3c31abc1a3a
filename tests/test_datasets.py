"""Datasets: digits splits, and MNIST-layout files read offline from a data root (made here)."""
from __future__ import annotations

import gzip
import hashlib
import os
import struct

import numpy as np
import pytest
import torchvision

from prunevo.errors import DataError
from prunevo.zoo.datasets import load_dataset, load_digits


def test_digits_splits_are_disjoint_stratified_and_fixed():
    a, b = load_digits(), load_digits()
    assert len(a.train_x) + len(a.val_x) + len(a.test_x) == 1797
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert a.fingerprint() == b.fingerprint()
    counts = np.bincount(a.val_y.numpy(), minlength=10)
    assert counts.min() >= 30


def test_a_fingerprint_changes_with_the_order_and_the_labels_and_is_the_same_in_every_process():
    import subprocess
    import sys
    from dataclasses import replace

    import torch

    from prunevo.fitness.data import TaskData
    from prunevo.zoo.images import TensorImages

    digits = load_digits()
    x, y = digits.train_x, digits.train_y
    task = TaskData("digits", 10, (1, 8, 8), TensorImages(x, y), TensorImages(x[:5], y[:5]), TensorImages(x[:5], y[:5]))
    swap = torch.nonzero(y != y[0])[0, 0]  # a sample of another class than the first
    order = torch.arange(len(y))
    order[0], order[swap] = swap, 0
    relabelled = y.clone()
    relabelled[0], relabelled[swap] = y[swap], y[0]
    # the same pixels and labels (sums, shapes) either way: a hash of sums could not tell them apart
    reordered = replace(task, train=TensorImages(x[order], y[order]))
    relabel = replace(task, train=TensorImages(x, relabelled))
    assert len({task.fingerprint(), reordered.fingerprint(), relabel.fingerprint()}) == 3
    assert replace(digits, train_y=relabelled).fingerprint() != digits.fingerprint()
    assert replace(task, train=TensorImages(x.clone(), y.clone())).fingerprint() == task.fingerprint()
    other = subprocess.run([sys.executable, "-c", "from prunevo.zoo.datasets import load_digits; "
                            "print(load_digits().fingerprint())"], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == digits.fingerprint()


def _idx_images(n: int, rows: int = 28) -> bytes:
    data = np.random.default_rng(0).integers(0, 255, size=(n, rows, rows), dtype=np.uint8)
    return struct.pack(">IIII", 2051, n, rows, rows) + data.tobytes()


def _idx_labels(n: int) -> bytes:
    return struct.pack(">II", 2049, n) + (np.arange(n) % 10).astype(np.uint8).tobytes()


def _fake_mnist_root(root, folder="MNIST", n_train=200, n_test=50, corrupt=False):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    payloads = {"train-images-idx3-ubyte": _idx_images(n_train), "train-labels-idx1-ubyte": _idx_labels(n_train),
                "t10k-images-idx3-ubyte": _idx_images(n_test), "t10k-labels-idx1-ubyte": _idx_labels(n_test)}
    md5s = {}
    for name, payload in payloads.items():
        blob = gzip.compress(payload)
        if corrupt and name.startswith("t10k-labels"):
            blob = blob[:-4] + b"oops"
        (raw / f"{name}.gz").write_bytes(blob)
        md5s[f"{name}.gz"] = hashlib.md5(gzip.compress(payload)).hexdigest()
    return md5s


@pytest.fixture
def fake_resources(monkeypatch):
    def install(cls, md5s):
        resources = [(f"https://example.invalid/{name}", md5) for name, md5 in md5s.items()]
        monkeypatch.setattr(cls, "resources", resources)
    return install


def test_mnist_layout_is_read_without_writing_to_the_root(tmp_path, fake_resources):
    root = tmp_path / "readonly"
    fake_resources(torchvision.datasets.MNIST, _fake_mnist_root(root))
    os.chmod(root / "MNIST" / "raw", 0o555)
    try:
        splits = load_dataset("mnist", root, cache_dir=tmp_path / "cache")
    finally:
        os.chmod(root / "MNIST" / "raw", 0o755)
    assert splits.input_shape == (1, 28, 28)
    assert len(splits.train_x) + len(splits.val_x) == 200 and len(splits.test_x) == 50
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == sorted(
        f"{n}.gz" for n in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                            "t10k-labels-idx1-ubyte"])


def test_fashion_mnist_and_corrupt_files(tmp_path, fake_resources):
    root = tmp_path / "data"
    fake_resources(torchvision.datasets.FashionMNIST, _fake_mnist_root(root, "FashionMNIST", corrupt=True))
    with pytest.raises(DataError, match="corrupt"):
        load_dataset("fashion-mnist", root, cache_dir=tmp_path / "cache")


def test_missing_dataset_messages(tmp_path):
    with pytest.raises(DataError, match="needs data_root"):
        load_dataset("mnist", None)
    with pytest.raises(DataError, match="not found under"):
        load_dataset("mnist", tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="not a directory"):
        load_dataset("mnist", tmp_path / "nope")
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")
