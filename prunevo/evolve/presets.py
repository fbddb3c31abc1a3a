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
5 re-scoring seeds, 2 workers: 48 minutes on a 2-core CPU before racing (issue 28), which added 38% to the
evolution's time of a ResNet-20 search (docs/BENCHMARKS.md, "Does the search beat its seeds?"): about an hour.

``transfer`` (short fine-tune): LeNet-5 on MNIST (uniform allocation) and a small VGG on Imagenette at 32 px
(global allocation: the formula also sets each layer's width) are co-evolved, each pruned to 50% of its
MACs and fine-tuned briefly (the best quarter of each generation's new selections, by one-shot accuracy on
a validation subset: the fidelity ladder); a small ResNet on Fashion-MNIST is the check task.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from prunevo.errors import DataError, PrunevoError

DEFAULT_DATA_ROOT = "../shared/data"
IMAGENETTE32 = "imagefolder:{root}/imagenette2:size=32,pretrain=8"  # base nets: 8 epochs on Imagenette's train/
FASHION = "fashion-mnist:pretrain=1"  # base nets: one epoch on Fashion-MNIST's 54,000 training images
MNIST = "mnist:pretrain=1"
ONE_SHOT = "epochs=0,recal=2,val=2000,holdout=2000"


@dataclass(frozen=True, kw_only=True)
class Preset:
    """A named set of evolve options: ``settings(root)`` gives their values (by config path, as the command
    line's destinations are named: ``execution.n_jobs``) for the
    data root ``root``, which must hold ``folders``; ``summary`` is the one-line description of ``--help``."""

    summary: str
    folders: tuple[str, ...]
    settings: Callable[[Path], dict]

    def describe(self) -> str:
        """The summary and the run's size, read from the settings themselves."""
        s = self.settings(Path(DEFAULT_DATA_ROOT))
        ladder = f", ladder {s['ladder']}" if s.get("ladder", "off") != "off" else ""
        return (f"{self.summary}; population {s['population']}, {s['generations']} generations, "
                f"{s['rescore_seeds']} re-scoring seeds, {s['execution.n_jobs']} workers{ladder}")


def _oneshot(root: Path) -> dict:
    # ResNet-20 ranked criteria most like the held-out networks, and its best picks lost least there
    tasks = [f"resnet20@{data},macs={m},{ONE_SHOT}" for data in (FASHION, MNIST) for m in (0.25, 0.5)]
    # a network family (VGG) and data (colour photos) that no fitness task uses
    check = [f"small-vgg@{IMAGENETTE32.format(root=root)},macs={m},epochs=0,recal=2" for m in (0.25, 0.5)]
    return {"tasks": tasks, "check_tasks": check, "population": 48, "generations": 12, "hall_of_fame_size": 5,
            "rescore_seeds": 5, "execution.n_jobs": 2, "data_root": str(root)}


def _transfer(root: Path) -> dict:
    return {
        "tasks": ["lenet5@mnist:macs=0.5,val=2000",
                  f"small-vgg@imagefolder:{root}/imagenette2:size=32,macs=0.5,train=1000,allocation=global"],
        "check_tasks": ["small-resnet@fashion-mnist:macs=0.5,train=2000"],
        # the ladder fine-tunes the best quarter of each generation's new selections only, and two workers
        # pay since jobs carry many candidates (docs/BENCHMARKS.md, evaluator throughput)
        "population": 32, "generations": 6, "hall_of_fame_size": 5, "rescore_seeds": 2, "execution.n_jobs": 2,
        "ladder": "0.25",
        "data_root": str(root),
    }


_REAL_DATA = ("MNIST", "FashionMNIST", "imagenette2")
PRESETS: dict[str, Preset] = {
    "oneshot": Preset(
        summary="the one-shot regime (no fine-tune): ResNet-20 on Fashion-MNIST and on MNIST, each pruned to 25% "
                "and to 50% of the MACs, 2,000 validation images; check tasks: a small VGG on Imagenette at 32 px, "
                "25% and 50%; about an hour on a 2-core CPU",
        folders=_REAL_DATA, settings=_oneshot),
    "transfer": Preset(
        summary="short fine-tune: LeNet-5 on MNIST and a small VGG on Imagenette at 32 px (global allocation), "
                "each pruned to 50% of the MACs; check task: a small ResNet on Fashion-MNIST",
        folders=_REAL_DATA, settings=_transfer),
}


def preset_defaults(name: str, data_root: str | None) -> dict:
    """The preset's option values (config paths) for ``data_root`` (default ``../shared/data``).

    Raises PrunevoError for an unknown name, DataError when the data root lacks one of the preset's folders."""
    if name not in PRESETS:
        raise PrunevoError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    preset, root = PRESETS[name], Path(data_root or DEFAULT_DATA_ROOT)
    missing = [d for d in preset.folders if not (root / d).is_dir()]
    if missing:
        raise DataError(f"{{param:preset={name}}} needs {', '.join(f + '/' for f in preset.folders)} under "
                        f"{{param:data_root}} "
                        f"{root}; missing: {', '.join(missing)}")
    return preset.settings(root)
