"""Image datasets for transfer: train / validation / test ``Dataset`` objects of fixed-size tensors.

The datasets are registered at the end of this file (``zoo.registry``): ``digits`` (embedded), ``mnist``,
``fashion-mnist``, ``cifar10``, ``cifar100``, ``svhn`` (read from ``--data-root``; ``download=True`` fetches them
with torchvision where a network is available), ``imagefolder:PATH`` (``PATH/train`` and ``PATH/val`` class
folders; without ``val/`` a stratified 10% of ``train/`` is held out) and ``fakedata`` (random images, for smoke
tests).  The validation split picks
nothing in transfer runs; reports use the test split (for image folders: ``val/``, or ``test/`` if present).

Small datasets live in memory as normalized float tensors; image folders are read lazily with PIL.
Training samples get standard augmentations; every split is adapted to the model's channel count
(grey to RGB and back) and to ``image_size`` when given.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from prunevo.errors import DataError
from prunevo.zoo.cifar import load_cifar, load_svhn
from prunevo.zoo.datasets import load_digits, load_torchvision_digits
from prunevo.zoo.registry import dataset_spec, register_dataset
from prunevo.zoo.stratify import stratified_split

FOLDER_SIZE = 224  # pixels an image folder of large photos is resized to, unless image_size says otherwise
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class TensorImages(Dataset):
    """In-memory images ``x[N, C, H, W]`` (normalized floats) with labels and an optional per-sample transform."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: Callable | None = None):
        self.x, self.targets, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        img = self.x[i]
        return (self.transform(img) if self.transform else img), int(self.targets[i])


@dataclass
class ImageData:
    """A dataset ready for training and evaluation: ``train`` is augmented, ``train_plain`` is not."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    train: Dataset
    train_plain: Dataset
    val: Dataset
    test: Dataset
    augmentation: str = ""  # the training augmentation, as reports state it
    # the validation split was carved by prunevo out of the dataset's training files (MNIST's, CIFAR's, an image
    # folder's train/): weights trained elsewhere on those files may have seen it (see fitness.data)
    val_carved: bool = False


def labels_of(dataset: Dataset) -> torch.Tensor:
    """The labels of a dataset without loading its images."""
    if isinstance(dataset, Subset):
        return labels_of(dataset.dataset)[torch.as_tensor(dataset.indices)]
    targets = getattr(dataset, "targets", None)
    if targets is None:
        raise DataError(f"{type(dataset).__name__} has no 'targets': cannot stratify its samples")
    return torch.as_tensor(targets, dtype=torch.long)


def _adapter(in_channels: int, channels: int, size: int | None) -> list[Callable]:
    from torchvision.transforms import v2

    steps: list[Callable] = []
    if size is not None:
        steps.append(v2.Resize((size, size), antialias=True))
    if channels != in_channels:
        if in_channels == 1:
            steps.append(lambda t: t.expand(channels, -1, -1))
        elif channels == 1:
            steps.append(lambda t: t.mean(0, keepdim=True))
        else:
            raise DataError(f"cannot adapt {in_channels}-channel images to a model that reads {channels} channels")
    return steps


def tensor_image_data(name: str, num_classes: int, splits: tuple, channels: int | None, size: int | None,
                      flip: bool, val_carved: bool = False) -> ImageData:
    """An ``ImageData`` from in-memory tensors, for a registered dataset's loader.

    Args:
        name: the dataset's name.
        num_classes: its number of classes.
        splits: ``((train_x, train_y), (val_x, val_y), (test_x, test_y))``; ``x`` ``[N, C, H, W]`` normalized
            floats, ``y`` ``[N]`` integer labels.
        channels: the model's input channels (None: the images'); grey and RGB are converted.
        size: the model's input size in pixels (None: the images').
        flip: whether training augmentation flips horizontally (not for digits).
        val_carved: whether the validation split was carved out of the dataset's training files.

    Returns:
        The dataset with an augmented (random crop, optional flip) and a plain training split.

    Raises:
        DataError: images whose channels cannot be adapted to ``channels``.
    """
    from torchvision.transforms import v2

    (trx, tr_y), (vx, vy), (tx, ty) = splits
    c, h, _ = trx.shape[1:]
    channels = channels or c
    out_size = size or h
    adapt = _adapter(c, channels, size if size and size != h else None)
    augment = [v2.RandomCrop(out_size, padding=max(1, out_size // 8))]
    if flip:
        augment.append(v2.RandomHorizontalFlip())
    plain = v2.Compose(adapt) if adapt else None
    described = f"random crop {out_size} px with padding {max(1, out_size // 8)}"
    described += ", horizontal flip" if flip else ""
    return ImageData(
        name, num_classes, (channels, out_size, out_size),
        TensorImages(trx, tr_y, v2.Compose(adapt + augment)),
        TensorImages(trx, tr_y, plain), TensorImages(vx, vy, plain), TensorImages(tx, ty, plain), described,
        val_carved,
    )


def _per_channel_standardize(train_x: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean = train_x.mean(dim=(0, 2, 3), keepdim=True)
    std = train_x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-8)
    return [(t - mean) / std for t in (train_x, *others)]


def _fakedata() -> tuple:
    """torchvision's FakeData (random 32x32 RGB images, 10 classes), rendered once into tensors."""
    from torchvision.datasets import FakeData
    from torchvision.transforms.functional import pil_to_tensor

    parts, offset = [], 0
    for n in (320, 80, 80):
        fake = FakeData(size=n, image_size=(3, 32, 32), num_classes=10, random_offset=offset)
        offset += n
        images = [fake[i] for i in range(n)]
        parts.append((torch.stack([pil_to_tensor(img).float() / 255 for img, _ in images]),
                      torch.tensor([int(label) for _, label in images])))
    xs = _per_channel_standardize(*(p[0] for p in parts))
    return tuple((x, p[1]) for x, p in zip(xs, parts))


def _image_folder(path: Path, channels: int | None, size: int | None) -> ImageData:
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    train_dir = path / "train"
    if not train_dir.is_dir():
        raise DataError(f"image folder {path} has no train/ folder; expected {path}/train/CLASS/*.jpg "
                        f"and optionally {path}/val/ and {path}/test/")
    sides = _probed_sides(train_dir)
    native = max(sides) if sides else None
    small = native is not None and (native <= SMALL_IMAGES or native == size)
    size = size or folder_size(train_dir, sides)
    mixed = len(set(sides)) > 1
    channels = channels or 3
    to_tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    grey = [v2.Grayscale(1)] if channels == 1 else [v2.RGB()]
    norm = [v2.Normalize(IMAGENET_MEAN[:channels] if channels == 3 else (0.5,),
                         IMAGENET_STD[:channels] if channels == 3 else (0.25,))]
    if small:  # CIFAR convention: the images are the objects, not photos to crop a detail from
        # every image is resized that is not size x size already: a folder may mix sizes beyond the probes
        fit = [_FitSquare(size)]
        pad = max(1, size // 8)
        augment = [v2.RandomCrop(size, padding=pad), v2.RandomHorizontalFlip()]
        train_tf = v2.Compose(grey + fit + augment + to_tensor + norm)
        eval_tf = v2.Compose(grey + fit + to_tensor + norm)
        found = f"{min(sides)}-{native}-px images" if mixed else f"{native}-px images"
        augmentation = (f"{found} (CIFAR convention): every image not {size}x{size} px resized to it, "
                        f"random crop with padding {pad} and horizontal flip; evaluation unchanged")
    else:  # ImageNet convention
        train_tf = v2.Compose(grey + [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
                              + to_tensor + norm)
        eval_tf = v2.Compose(grey + [v2.Resize(int(size * 8 / 7), antialias=True), v2.CenterCrop(size)]
                             + to_tensor + norm)
        augmentation = (f"ImageNet convention: random resized crop to {size} px (scale 0.08-1) and horizontal "
                        f"flip; evaluation resized to {int(size * 8 / 7)} px and center-cropped to {size}")
    try:
        train = ImageFolder(str(train_dir), train_tf, loader=read_image)
        train_plain = ImageFolder(str(train_dir), eval_tf, loader=read_image)
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"image folder {train_dir} cannot be read: {exc}") from None
    num_classes = len(train.classes)
    if (path / "val").is_dir():
        val = ImageFolder(str(path / "val"), eval_tf, loader=read_image)
        if val.classes != train.classes:
            raise DataError(f"{path}/val has classes {val.classes}, but train/ has {train.classes}")
    else:  # a split we create: a stratified tenth of train/, never trained on
        tr, va = stratified_split(np.asarray(train.targets), (0.9, 0.1), 0)
        val = Subset(train_plain, va.tolist())
        train, train_plain = Subset(train, tr.tolist()), Subset(train_plain, tr.tolist())
    test = ImageFolder(str(path / "test"), eval_tf, loader=read_image) if (path / "test").is_dir() else val
    return ImageData(f"imagefolder:{path}", num_classes, (channels, size, size), train, train_plain, val, test,
                     augmentation, val_carved=not (path / "val").is_dir())


# Pixel modes that PIL's RGB conversion clips to 8 bits: read as floats in [0, 1] instead (32-bit integer
# images are taken as 16-bit counts, the usual source of PIL's "I" mode; float images are kept as they are).
_DEEP_SCALE = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}


def read_image(path: str):
    """An image file decoded whole, or a one-line DataError naming the file: a truncated or corrupt JPEG
    otherwise fails deep inside a training step with PIL's message and no file name.

    8-bit images of any mode PIL opens (L, 1, P, LA, RGBA, CMYK, YCbCr, LAB, HSV...) come back as a PIL RGB
    image (alpha dropped; grey stays exact through the model's Grayscale(1)); 16-bit, 32-bit and float images
    (PIL modes I;16, I, F, and 16-bit RGB/RGBA PNGs, which PIL reads as 8-bit RGB) come back as a float
    ``tv_tensors.Image`` of shape (1 or 3, H, W) in [0, 1], so no bit depth is lost."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as f, Image.open(f) as image:
            if image.mode in _DEEP_SCALE:
                pixels = np.asarray(image).astype(np.float32) / _DEEP_SCALE[image.mode]
                return _float_image(torch.from_numpy(pixels)[None])
            if image.format == "PNG" and any(str(t.args).endswith(";16B") for t in image.tile):
                return _png16(path)
            if image.mode == "P" and "transparency" in image.info:
                image = image.convert("RGBA")  # what PIL asks for palette transparency; alpha is dropped next
            return image.convert("RGB")  # convert decodes every pixel, so truncation shows here
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, RuntimeError) as exc:
        raise DataError(f"image {path} cannot be read ({type(exc).__name__}: {exc}); replace or remove it") from None


def _float_image(pixels: torch.Tensor):
    from torchvision import tv_tensors

    return tv_tensors.Image(pixels)


def _png16(path: str):
    """A 16-bit-per-channel PNG (grey+alpha, RGB, RGBA) as floats in [0, 1], alpha dropped."""
    import warnings

    with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders for torchcodec, not installed here
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_png, read_file

        pixels = decode_png(read_file(path), mode=ImageReadMode.UNCHANGED)  # uint16 (C, H, W)
    colour = pixels[:3] if pixels.shape[0] >= 3 else pixels[:1]
    return _float_image(colour.to(torch.float32) / 65535.0)


SMALL_IMAGES = 64  # image folders whose images are at most this many pixels use the CIFAR convention
_SIZE_PROBES = 8


class _FitSquare:
    """Resize to ``size`` x ``size`` pixels (antialiased) unless the image already is: an identity for a folder
    of equal sizes, and no stacking error for one that mixes them."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image):
        from torchvision.transforms.v2 import functional as F

        if tuple(F.get_size(image)) == (self.size, self.size):
            return image
        return F.resize(image, [self.size, self.size], antialias=True)

    def __repr__(self) -> str:
        return f"FitSquare({self.size})"


def folder_size(train_dir: Path, sides: list[int] | None = None) -> int:
    """The image size an image folder is read at without ``image_size``: its images' own size when they are
    small (the CIFAR convention), else ``FOLDER_SIZE`` (the ImageNet convention)."""
    sides = _probed_sides(train_dir) if sides is None else sides
    native = max(sides) if sides else None
    return native if native is not None and native <= SMALL_IMAGES else FOLDER_SIZE


def _probed_sides(train_dir: Path) -> list[int]:
    """The larger side of up to ``_SIZE_PROBES`` images spread over the classes, from their headers (empty
    when none can be read: the ImageNet convention applies)."""
    from PIL import Image, UnidentifiedImageError

    sides = []
    for class_dir in sorted(p for p in train_dir.iterdir() if p.is_dir())[:_SIZE_PROBES]:
        first = next((f for f in sorted(class_dir.iterdir()) if f.is_file()), None)
        if first is None:
            continue
        try:
            with Image.open(first) as image:
                sides.append(max(image.size))
        except (OSError, UnidentifiedImageError):
            continue
    return sides


def load_image_data(name: str, data_root: str | os.PathLike | None = None, channels: int | None = None,
                    image_size: int | None = None, download: bool = False, cache_dir: Path | None = None) -> ImageData:
    """Load a registered dataset (``zoo.registry``) by name, adapted to ``channels`` input channels and
    ``image_size`` pixels.  Raises DataError for an unknown name (listing the registered ones) or missing files."""
    return dataset_spec(name).load(name, data_root, channels, image_size, download, cache_dir)


# --- the datasets: one registration each (README, "Adding a dataset") ---------------------------------------------
def _whole(splits) -> tuple:
    return (splits.train_x, splits.train_y), (splits.val_x, splits.val_y), (splits.test_x, splits.test_y)


@register_dataset("digits", classes=10, help="digits (embedded)", budget="digits",
                  splits=lambda name, data_root=None, cache_dir=None: load_digits())
def _digits(name, data_root, channels, image_size, download, cache_dir) -> ImageData:
    return tensor_image_data(name, 10, _whole(load_digits()), channels, image_size, flip=False)


def _load_mnist(name, data_root, channels, image_size, download, cache_dir) -> ImageData:
    splits = load_torchvision_digits(name, data_root, cache_dir, download=download)
    return tensor_image_data(name, 10, _whole(splits), channels, image_size, flip=name == "fashion-mnist",
                             val_carved=True)


for _name in ("mnist", "fashion-mnist"):
    register_dataset(_name, classes=10, help=_name, budget="grey", splits=load_torchvision_digits)(_load_mnist)


def _load_cifar(name, data_root, channels, image_size, download, cache_dir) -> ImageData:
    if data_root is None:
        raise DataError(f"dataset {name!r} needs {{param:data_root}} (and {{param:download}} if its files are not "
                        f"there yet)")
    raw = load_svhn(Path(data_root), download) if name == "svhn" else load_cifar(name, Path(data_root), download)
    (trx, tr_y), (tx, ty) = raw
    tr, va = stratified_split(tr_y, (0.9, 0.1), 0)
    trx, vx, tx = _per_channel_standardize(trx[tr], trx[va], tx)
    splits = ((trx, tr_y[tr]), (vx, tr_y[va]), (tx, ty))
    return tensor_image_data(name, 100 if name == "cifar100" else 10, splits, channels, image_size, flip=name != "svhn",
                        val_carved=True)


for _name, _classes in (("cifar10", 10), ("cifar100", 100), ("svhn", 10)):
    register_dataset(_name, classes=_classes, help=_name + (" (from --data-root)" if _name == "svhn" else ""))(
        _load_cifar)


@register_dataset("imagefolder:", parameter="PATH", classes=None,
                  help="imagefolder:PATH (PATH/train, and PATH/val or a held-out tenth of train)")
def _folder(name, data_root, channels, image_size, download, cache_dir) -> ImageData:
    path = Path(name.split(":", 1)[1]).expanduser()
    if not path.is_dir():
        raise DataError(f"image folder {path} does not exist")
    return _image_folder(path, channels, image_size)


@register_dataset("fakedata", classes=10, help="fakedata (random images, for smoke tests)")
def _fake(name, data_root, channels, image_size, download, cache_dir) -> ImageData:
    return tensor_image_data(name, 10, _fakedata(), channels, image_size, flip=True)
