"""``prunevo train``: train a base model on a dataset and save a checkpoint that apply/compare can load."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from prunevo.errors import PrunevoError
from prunevo.transfer.checkpoint import save_checkpoint
from prunevo.transfer.setup import load_setup, resolved_stem
from prunevo.training import Accelerator, FitConfig, evaluate, fit, resolve_device


@dataclass(frozen=True)
class TrainConfig:
    model: str
    dataset: str = "digits"
    output: str = "base.pt"
    data_root: str | None = None
    download: bool = False
    image_size: int | None = None
    stem: str = "auto"
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=10, lr=0.05, lr_schedule="step"))
    seed: int = 0
    device: str = "cpu"
    amp: bool | None = None
    channels_last: bool | None = None
    checkpoint: str | None = None  # start from these weights instead of a random initialization
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.fit.lr_schedule not in ("cosine", "step"):
            raise PrunevoError(f"base training uses a cosine or step schedule, not {self.fit.lr_schedule!r}")


@dataclass
class TrainResult:
    output: str
    val_top1: float
    test: dict[str, float]
    wall_s: float
    augmentation: str = ""  # the training augmentation that was used


def train_base(config: TrainConfig, progress: bool = False) -> TrainResult:
    """Train, evaluate on the validation and test splits, and save the checkpoint atomically."""
    start = time.perf_counter()
    accel = Accelerator(resolve_device(config.device), config.amp, config.channels_last)
    torch.manual_seed(config.seed)  # the model is initialized from this seed: same seed, same net
    data, model, _ = load_setup(config, warn_untrained=False)
    fit(model, data.train, config.fit, config.seed, accel, progress=progress, desc=f"train {config.model}")
    val = evaluate(model, data.val, accel)["top1"]
    test = evaluate(model, data.test, accel)
    model.cpu()
    meta = {"model": config.model, "dataset": config.dataset, "num_classes": data.num_classes,
            "input_shape": list(data.input_shape), "stem": resolved_stem(config.model, config.stem, data.input_shape[1]),
            "schedule": config.fit.lr_schedule, "seed": config.seed, "val_top1": val, "test": test,
            "fit": asdict(config.fit), "augmentation": data.augmentation}
    save_checkpoint(Path(config.output), model, meta)
    return TrainResult(config.output, val, test, round(time.perf_counter() - start, 2), data.augmentation)
