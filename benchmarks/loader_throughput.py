"""Data-loading throughput of a dataset as prunevo's training and evaluation read it (decode, augment,
collate), in images per second, for several DataLoader worker counts side by side.

    python benchmarks/loader_throughput.py imagefolder:../shared/data/imagenette2 --image-size 128 --workers 0 2

The first batch of each pass (worker start-up) is not timed; each pass reads up to --images images.
"""
from __future__ import annotations

import argparse
import time

from prunevo.training.batches import make_loader
from prunevo.zoo.images import load_image_data


def images_per_second(dataset, batch_size: int, workers: int, limit: int, shuffle: bool) -> float:
    loader = make_loader(dataset, batch_size, shuffle=shuffle, seed=0, workers=workers)
    seen, start = 0, None
    for x, _ in loader:
        if start is None:  # worker start-up and the first batch are not timed
            start = time.perf_counter()
            continue
        seen += len(x)
        if seen >= limit:
            break
    elapsed = time.perf_counter() - start if start is not None else 0.0
    return seen / elapsed if seen and elapsed > 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="a prunevo dataset name, e.g. imagefolder:PATH")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--images", type=int, default=4096, help="images timed per pass (default: 4096)")
    args = parser.parse_args()
    data = load_image_data(args.dataset, args.data_root, image_size=args.image_size)
    print(f"{data.name}: {len(data.train)} train / {len(data.test)} test images, input {data.input_shape}; "
          f"training augmentation: {data.augmentation}")
    print("| workers | train (augmented) images/s | evaluation images/s |")
    print("|---:|---:|---:|")
    for workers in args.workers:
        train = images_per_second(data.train, args.batch_size, workers, args.images, shuffle=True)
        test = images_per_second(data.test, args.batch_size, workers, args.images, shuffle=False)
        print(f"| {workers} | {train:,.0f} | {test:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
