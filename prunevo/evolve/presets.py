"""Named evolution settings (``prunevo evolve --preset NAME``); any option given on the command line wins.

Both read real data from a data root that holds MNIST/, FashionMNIST/ and imagenette2/ (default
``../shared/data``), train their base nets on first use (cached), and re-score the hall of fame on held-out
data with paired seeds, on check tasks whose network and data no fitness task uses.

``oneshot`` (the regime where criteria matter most; docs/BENCHMARKS.md, "One-shot discovery"): CIFAR
ResNet-20 on Fashion-MNIST and on MNIST, each pruned to 25% and to 50% of the MACs, BatchNorm re-estimated on
2 batches, no fine-tune, scored on 2,000 validation images (re-scored on 2,000 test images); of the
one-shot proxies in the fidelity benchmark, ResNet-20 tasks ranked criteria most like the held-out networks
and their best picks lost least there.  Check tasks: a small VGG on Imagenette at 32 px, at 25% and 50% of
the MACs (a network family and data no fitness task uses).  Population 48, 12 generations, hall of fame 5,
5 re-scoring seeds, 2 workers: under an hour on a 2-core CPU.

``transfer`` (short fine-tune): LeNet-5 on MNIST (uniform allocation) and a small VGG on Imagenette at 32 px
(global allocation: the formula also sets each layer's width) are co-evolved, each pruned to 50% of its
MACs and fine-tuned briefly; a small ResNet on Fashion-MNIST is the check task.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from prunevo.errors import DataError, PrunevoError

DEFAULT_DATA_ROOT = "../shared/data"
IMAGENETTE32 = "imagefolder:{root}/imagenette2:size=32,pretrain=8"  # base nets: 8 epochs on Imagenette's train/
FASHION = "fashion-mnist:pretrain=1"  # base nets: one epoch on Fashion-MNIST's 54,000 training images
MNIST = "mnist:pretrain=1"
ONE_SHOT = "epochs=0,recal=2,val=2000,holdout=2000"


def _needs(root: Path, preset: str, folders: tuple[str, ...]) -> None:
    missing = [d for d in folders if not (root / d).is_dir()]
    if missing:
        raise DataError(f"--preset {preset} needs {', '.join(f + '/' for f in folders)} under --data-root {root}; "
                        f"missing: {', '.join(missing)}")


def _oneshot(data_root: str) -> dict:
    root = Path(data_root)
    _needs(root, "oneshot", ("MNIST", "FashionMNIST", "imagenette2"))
    # ResNet-20 ranked criteria most like the held-out networks, and its best picks lost least there
    tasks = [f"resnet20@{data},macs={m},{ONE_SHOT}" for data in (FASHION, MNIST) for m in (0.25, 0.5)]
    # a network family (VGG) and data (colour photos) that no fitness task uses
    check = [f"small-vgg@{IMAGENETTE32.format(root=root)},macs={m},epochs=0,recal=2" for m in (0.25, 0.5)]
    return {"tasks": tasks, "check_tasks": check, "population": 48, "generations": 12, "hall_of_fame": 5,
            "rescore_seeds": 5, "n_jobs": 2, "data_root": str(root)}


def _transfer(data_root: str) -> dict:
    root = Path(data_root)
    _needs(root, "transfer", ("MNIST", "FashionMNIST", "imagenette2"))
    return {
        "tasks": ["lenet5@mnist:macs=0.5,val=2000",
                  f"small-vgg@imagefolder:{root}/imagenette2:size=32,macs=0.5,train=1000,allocation=global"],
        "check_tasks": ["small-resnet@fashion-mnist:macs=0.5,train=2000"],
        # one worker: on a 2-core machine a second one does not pay (docs/BENCHMARKS.md, evaluator throughput)
        "population": 32, "generations": 6, "hall_of_fame": 5, "rescore_seeds": 2, "n_jobs": 1,
        "data_root": str(root),
    }


PRESETS: dict[str, Callable[[str], dict]] = {"oneshot": _oneshot, "transfer": _transfer}


def preset_defaults(name: str, data_root: str | None) -> dict:
    """The preset's option values (CLI destination names)."""
    if name not in PRESETS:
        raise PrunevoError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return PRESETS[name](data_root or DEFAULT_DATA_ROOT)
