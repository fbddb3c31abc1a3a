"""Named evolution settings (``prunevo evolve --preset NAME``); any option given on the command line wins.

``transfer``: real data from a data root that holds MNIST/, FashionMNIST/ and imagenette2/ (default
``../shared/data``).  LeNet-5 on MNIST and a small VGG on Imagenette at 32 px are co-evolved, each pruned to
50% of its MACs and fine-tuned briefly, scored on 2,000 validation images; a ResNet on Fashion-MNIST is
the check task that evolution never trains on.  Sized to finish within an hour on a 2-core CPU.
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
                  f"small-vgg@imagefolder:{root}/imagenette2:size=32,macs=0.5,train=1000"],
        "check_tasks": ["small-resnet@fashion-mnist:macs=0.5,val=2000"],
        "population": 32, "generations": 8, "rescore_seeds": 3, "data_root": str(root),
    }


PRESETS = {"transfer": _transfer}


def preset_defaults(name: str, data_root: str | None) -> dict:
    """The preset's option values (CLI destination names)."""
    if name not in PRESETS:
        raise PrunevoError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return PRESETS[name](data_root or DEFAULT_DATA_ROOT)
