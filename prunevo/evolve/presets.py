"""Named evolution settings (``prunevo evolve --preset NAME``); any option given on the command line wins.

``transfer``: real data from a data root that holds MNIST/, FashionMNIST/ and imagenette2/ (default
``../shared/data``).  LeNet-5 on MNIST (uniform allocation) and a small VGG on Imagenette at 32 px (global
allocation: the formula also sets each layer's width) are co-evolved, each pruned to 50% of its MACs and
fine-tuned briefly (LeNet-5 scored on 2,000 validation images, the VGG on its ~1,970);
a small ResNet on Fashion-MNIST is the check task that evolution never uses.  Population 32, 6
generations, a hall of fame of 5, re-scored on 2 fresh seeds: sized to finish within an hour on a
2-core CPU.
"""
from __future__ import annotations

from pathlib import Path

from prunevo.errors import DataError, PrunevoError

DEFAULT_DATA_ROOT = "../shared/data"


def _transfer(data_root: str) -> dict:
    root = Path(data_root)
    missing = [d for d in ("MNIST", "FashionMNIST", "imagenette2") if not (root / d).is_dir()]
    if missing:
        raise DataError(f"--preset transfer needs MNIST/, FashionMNIST/ and imagenette2/ under --data-root "
                        f"{root}; missing: {', '.join(missing)}")
    return {
        "tasks": ["lenet5@mnist:macs=0.5,val=2000",
                  f"small-vgg@imagefolder:{root}/imagenette2:size=32,macs=0.5,train=1000,allocation=global"],
        "check_tasks": ["small-resnet@fashion-mnist:macs=0.5,train=2000"],
        # one worker: on a 2-core machine a second one does not pay (docs/BENCHMARKS.md, evaluator throughput)
        "population": 32, "generations": 6, "hall_of_fame": 5, "rescore_seeds": 2, "n_jobs": 1,
        "data_root": str(root),
    }


PRESETS = {"transfer": _transfer}


def preset_defaults(name: str, data_root: str | None) -> dict:
    """The preset's option values (CLI destination names)."""
    if name not in PRESETS:
        raise PrunevoError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return PRESETS[name](data_root or DEFAULT_DATA_ROOT)
