"""``prunevo train``: train a base model on a dataset and save a checkpoint that apply/compare can load."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prunevo.errors import PrunevoError
from prunevo.training import Accelerator, FitConfig, evaluate, fit
from prunevo.transfer.setup import Setup, load_setup, resolved_stem
from prunevo.zoo.checkpoints import save_checkpoint


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Train ``setup.model`` on ``setup.dataset`` (from ``setup.checkpoint``'s weights when given, else a random
    initialization drawn from ``seed``) with ``fit``, on ``accelerator``, and save the checkpoint to ``output``.

    Raises PrunevoError for a schedule base training does not use."""

    setup: Setup
    output: str = "base.pt"
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=10, lr=0.05, lr_schedule="step"))
    seed: int = 0
    accelerator: Accelerator = field(default_factory=Accelerator)

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
    """Train, evaluate on the validation and test splits, and save the checkpoint atomically.  Raises
    DataError, ModelError, or PrunevoError when training diverges."""
    start = time.perf_counter()
    accel = config.accelerator.resolved()
    setup = config.setup
    data, model, _ = load_setup(setup, warn_untrained=False, init_seed=config.seed)  # same seed, same net
    fit(model, data.train, config.fit, config.seed, accel, progress=progress, desc=f"train {setup.model}")
    val = evaluate(model, data.val, accel)["top1"]
    test = evaluate(model, data.test, accel)
    model.cpu()
    meta = {"model": setup.model, "dataset": setup.dataset, "num_classes": data.num_classes,
            "input_shape": list(data.input_shape), "stem": resolved_stem(setup.model, setup.stem, data.input_shape[1]),
            "schedule": config.fit.lr_schedule, "seed": config.seed, "val_top1": val, "test": test,
            "fit": asdict(config.fit), "augmentation": data.augmentation}
    save_checkpoint(Path(config.output), model, meta)
    return TrainResult(config.output, val, test, round(time.perf_counter() - start, 2), data.augmentation)
