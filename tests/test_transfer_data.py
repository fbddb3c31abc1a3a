"""Transfer datasets on files the tests make: an ImageFolder tree, CIFAR-format pickles, SVHN .mat files."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from prunevo.errors import DataError
from prunevo.zoo.images import labels_of, load_image_data
from tests.helpers import write_image_folder


def write_cifar(root, name="cifar10", n_train=50, n_test=20, classes=10):
    rng = np.random.default_rng(0)
    folder, train_files, test_files, key = {
        "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"),
        "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels"),
    }[name]
    base = root / folder
    base.mkdir(parents=True)
    for files, n in ((train_files, n_train), (test_files, n_test)):
        for f in files:
            batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                     key.encode(): [int(i % classes) for i in range(n)]}
            (base / f).write_bytes(pickle.dumps(batch))
    return root


def test_image_folder_with_a_split_we_create(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    data = load_image_data(f"imagefolder:{root}", image_size=32)
    assert data.num_classes == 3 and data.input_shape == (3, 32, 32)
    assert len(data.train) + len(data.val) == 24 and len(data.val) == 3  # a stratified tenth (one per class)
    assert sorted(labels_of(data.val).tolist()) == [0, 1, 2]
    x, y = data.train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    grey = load_image_data(f"imagefolder:{root}", image_size=32, channels=1)
    assert grey.train_plain[0][0].shape == (1, 32, 32)


def test_image_folder_with_val_and_bad_layouts(tmp_path):
    root = write_image_folder(tmp_path / "imgs", splits=("train", "val"), per_class=3)
    data = load_image_data(f"imagefolder:{root}", image_size=24)
    assert len(data.train) == 9 and len(data.val) == 9 and data.test is data.val
    with pytest.raises(DataError, match="no train/ folder"):
        load_image_data(f"imagefolder:{tmp_path}")
    with pytest.raises(DataError, match="does not exist"):
        load_image_data(f"imagefolder:{tmp_path / 'nowhere'}")


def test_small_image_folders_use_the_cifar_convention(tmp_path):
    from PIL import Image

    from prunevo.zoo.images import IMAGENET_MEAN, IMAGENET_STD

    root = write_image_folder(tmp_path / "tiny", size=32, splits=("train", "val"), per_class=3)
    data = load_image_data(f"imagefolder:{root}")
    assert data.input_shape == (3, 32, 32)  # the images' own size, not 224
    assert "CIFAR convention" in data.augmentation and "padding 4" in data.augmentation
    # evaluation does not resize or crop: the image itself, normalized
    x, _ = data.val[0]
    raw = torch.from_numpy(np.array(Image.open(sorted((root / "val" / "cat").iterdir())[0]))).permute(2, 0, 1) / 255
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(x, (raw - mean) / std)
    # training: random crops of the padded image, shifted by at most 4 px, never scaled up
    torch.manual_seed(0)
    crops = [data.train[0][0] for _ in range(8)]
    assert all(c.shape == (3, 32, 32) for c in crops) and len({c.sum().item() for c in crops}) > 1
    # a 48-px folder asked at 32 px: resized, then the same convention
    mid = load_image_data(f"imagefolder:{write_image_folder(tmp_path / 'mid', size=48)}", image_size=32)
    assert mid.input_shape == (3, 32, 32) and "every image not 32x32 px resized to it" in mid.augmentation
    # photos (here 100 px) keep the ImageNet convention
    big = load_image_data(f"imagefolder:{write_image_folder(tmp_path / 'big', size=100)}")
    assert big.input_shape == (3, 224, 224) and "ImageNet convention" in big.augmentation


def _stack_everything(data):
    for split in (data.train, data.train_plain, data.val):
        assert len(split) > 0
        batch = next(iter(torch.utils.data.DataLoader(split, batch_size=len(split))))[0]  # stacks every image
        assert batch.shape[1:] == data.input_shape and torch.isfinite(batch).all()


def test_image_folders_that_mix_sizes_load_at_one_size(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    # the probes read the first file of each class; the others differ (and are not square), as in the field
    sizes = {"a": [(24, 24), (30, 30), (20, 28)], "b": [(24, 24), (16, 16), (28, 20)], "c": [(24, 24)] * 3}
    for split in ("train", "val"):
        for name, shapes in sizes.items():
            (tmp_path / "mix" / split / name).mkdir(parents=True)
            for i, (w, h) in enumerate(shapes):
                Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / "mix" / split / name / f"{i}.png")
    data = load_image_data(f"imagefolder:{tmp_path / 'mix'}")
    assert data.input_shape == (3, 24, 24) and "24-px images" in data.augmentation
    assert "every image not 24x24 px resized to it" in data.augmentation
    _stack_everything(data)
    # sizes the probes see differ too: the largest is used, and the report says the range it found
    (tmp_path / "mix" / "train" / "a" / "0.png").unlink()
    data = load_image_data(f"imagefolder:{tmp_path / 'mix'}")
    assert data.input_shape == (3, 30, 30) and "24-30-px images" in data.augmentation
    _stack_everything(data)
    # photos of mixed sizes and shapes (ImageNet convention) crop to one size
    for name, shape in (("x", (100, 130)), ("y", (120, 90))):
        (tmp_path / "photos" / "train" / name).mkdir(parents=True)
        for i in range(10):  # a tenth is held out for validation
            Image.fromarray(rng.integers(0, 255, (*shape, 3), dtype=np.uint8)).save(tmp_path / "photos" / "train" / name / f"{i}.jpg")
    _stack_everything(load_image_data(f"imagefolder:{tmp_path / 'photos'}", image_size=64))


def _png16(path, pixels: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand: PIL cannot write one."""
    import struct
    import zlib

    h, w, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _decoded(path) -> torch.Tensor:
    from torchvision.transforms import v2

    from prunevo.zoo.images import read_image

    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])(read_image(str(path)))


def test_every_image_mode_decodes_without_losing_information(tmp_path):
    from PIL import Image

    grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    rgb = np.stack([grey, 255 - grey, grey // 2], -1)
    deep = np.arange(48, dtype=np.uint16).reshape(6, 8) * 1361  # up to 63,967: 16 bits in use

    def check(name, image, expected, fmt="PNG", **save):
        path = tmp_path / f"{name}.{fmt.lower()}"
        image.save(path, format=fmt, **save)
        got = _decoded(path)
        expected = torch.as_tensor(np.asarray(expected, dtype=np.float32))
        expected = expected.permute(2, 0, 1) if expected.ndim == 3 else expected[None].expand(3, -1, -1)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0, msg=lambda m: f"{name}: {m}")

    check("L", Image.fromarray(grey), grey / 255)
    check("1", Image.fromarray(grey > 100), (grey > 100) * 1.0)
    check("RGB", Image.fromarray(rgb), rgb / 255)
    check("RGBA", Image.fromarray(np.dstack([rgb, grey])), rgb / 255)  # alpha dropped, colour kept
    check("LA", Image.fromarray(np.dstack([grey, 255 - grey]), mode="LA"), grey / 255)
    palette = Image.fromarray(rgb).quantize(16)
    check("P", palette, np.asarray(palette.convert("RGB")) / 255)
    check("P-transparent", palette, np.asarray(palette.convert("RGB")) / 255, transparency=0)
    check("CMYK", Image.fromarray(rgb).convert("CMYK"), rgb / 255, fmt="TIFF")  # PIL's CMYK round trip is exact
    # deeper than 8 bits: one channel in [0, 1] (grey), or three (16-bit RGB); PIL's RGB conversion clips these
    for name, image, fmt in (("I16-png", Image.fromarray(deep), "PNG"), ("I16-tiff", Image.fromarray(deep), "TIFF"),
                             ("I32-tiff", Image.fromarray(deep.astype(np.int32)), "TIFF")):
        path = tmp_path / f"{name}.{fmt.lower()}"
        image.save(path, format=fmt)
        torch.testing.assert_close(_decoded(path), torch.from_numpy(deep / 65535.0).float()[None], atol=1e-6, rtol=0)
    floats = np.linspace(0, 1, 48, dtype=np.float32).reshape(6, 8)
    Image.fromarray(floats, mode="F").save(tmp_path / "F.tiff")
    torch.testing.assert_close(_decoded(tmp_path / "F.tiff"), torch.from_numpy(floats)[None])
    deep_rgb = np.stack([deep, 65535 - deep, deep // 3], -1)
    _png16(tmp_path / "rgb16.png", deep_rgb)
    torch.testing.assert_close(_decoded(tmp_path / "rgb16.png"),
                               torch.from_numpy(deep_rgb / 65535.0).float().permute(2, 0, 1), atol=1e-6, rtol=0)


def test_a_folder_of_16_bit_images_keeps_its_depth_through_the_dataset(tmp_path):
    from PIL import Image

    from prunevo.zoo.images import IMAGENET_MEAN, IMAGENET_STD

    values = {"dark": 300, "bright": 900}  # both 0 or 1 once clipped to 8 bits: one class without the depth
    for split in ("train", "val"):
        for name, v in values.items():
            (tmp_path / "scans" / split / name).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((16, 16), v + i, dtype=np.uint16)).save(tmp_path / "scans" / split / name / f"{i}.png")
    grey = load_image_data(f"imagefolder:{tmp_path / 'scans'}", channels=1)
    x = {name: grey.val[k * 2][0] for k, name in enumerate(sorted(values))}
    for name, v in values.items():
        torch.testing.assert_close(x[name], torch.full((1, 16, 16), (v / 65535 - 0.5) / 0.25))
    colour = load_image_data(f"imagefolder:{tmp_path / 'scans'}")  # grey replicated to the model's 3 channels
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(colour.val[0][0], (torch.full((3, 16, 16), values["bright"] / 65535) - mean) / std)


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_pickles(tmp_path, name, classes):
    write_cifar(tmp_path, name, n_train=200 if name == "cifar100" else 50, classes=classes)
    data = load_image_data(name, data_root=tmp_path)
    assert data.num_classes == classes and data.input_shape == (3, 32, 32)
    n_train = 200 if name == "cifar100" else 250
    assert len(data.train) + len(data.val) == n_train and len(data.test) == (20 if name == "cifar100" else 20)
    stacked = torch.stack([data.train_plain[i][0] for i in range(len(data.train_plain))])
    assert stacked.mean(dim=(0, 2, 3)).abs().max() < 0.1  # standardized per channel
    assert data.train[0][0].shape == (3, 32, 32)  # augmented samples keep their size
    resized = load_image_data(name, data_root=tmp_path, image_size=48, channels=1)
    assert resized.train_plain[0][0].shape == (1, 48, 48)


def test_missing_and_hostile_cifar_files_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="missing data_batch_1.*download"):
        load_image_data("cifar10", data_root=tmp_path)
    with pytest.raises(DataError, match="needs data_root"):
        load_image_data("cifar10")
    write_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(DataError, match="not a readable CIFAR batch.*not allowed"):
        load_image_data("cifar10", data_root=tmp_path)


def test_svhn_mat_files(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 10)):
        savemat(tmp_path / f"{split}_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                                                 "y": (np.arange(n) % 10 + 1).reshape(-1, 1)})
    data = load_image_data("svhn", data_root=tmp_path)
    assert data.num_classes == 10 and len(data.test) == 10
    assert set(labels_of(data.test).tolist()) == set(range(10))  # label 10 is the digit 0


def test_fakedata_and_grey_to_rgb():
    fake = load_image_data("fakedata")
    assert fake.input_shape == (3, 32, 32) and len(fake.train) == 320
    digits = load_image_data("digits", channels=3, image_size=32)
    x, _ = digits.train_plain[0]
    assert x.shape == (3, 32, 32) and torch.equal(x[0], x[1])
    with pytest.raises(DataError, match="unknown dataset 'imagenet'.*allowed"):
        load_image_data("imagenet")
