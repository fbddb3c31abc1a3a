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
    """How ``prunevo train`` trains a base network (``train_base``).

    Attributes:
        setup: the model and dataset; ``setup.checkpoint``'s weights are the start when given.
        output: the checkpoint to write (a ``.pt`` with its model, dataset, input size and recipe).
        fit: the SGD recipe; base training uses a cosine or step schedule.
        seed: draws the initial weights (without a checkpoint) and the data order.
        accelerator: where to train.

    Raises:
        PrunevoError: a schedule base training does not use.

    Example:
        >>> from prunevo import FitConfig, Setup, TrainConfig
        >>> TrainConfig(setup=Setup(model="lenet5", dataset="digits"), fit=FitConfig(epochs=1))
        Traceback (most recent call last):
        ...
        prunevo.errors.PrunevoError: base training uses a cosine or step schedule, not 'clr'
    """

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
    """What ``train_base`` did.

    Attributes:
        output: the checkpoint written.
        val_top1: top-1 accuracy on the validation split (a fraction in [0, 1]).
        test: the test split's metrics (``top1``).
        wall_s: seconds of training and evaluation.
        augmentation: the training augmentation used, in words.

    Example:
        >>> import tempfile
        >>> from prunevo import FitConfig, Setup, TrainConfig, train_base
        >>> result = train_base(TrainConfig(setup=Setup(model="lenet5", dataset="digits"), fit=FitConfig(
        ...     epochs=1, lr_schedule="cosine"), output=tempfile.mkdtemp() + "/base.pt"))
        >>> sorted(result.test), result.augmentation
        (['top1'], 'random crop 8 px with padding 1')
    """

    output: str
    val_top1: float
    test: dict[str, float]
    wall_s: float
    augmentation: str = ""  # the training augmentation that was used


def train_base(config: TrainConfig, progress: bool = False) -> TrainResult:
    """Train a base network, evaluate it on the validation and test splits, and save its checkpoint atomically.

    Args:
        config: the model, data, recipe and output.
        progress: a progress bar per epoch.

    Returns:
        The checkpoint's path and accuracies.

    Raises:
        DataError: missing or unreadable data.
        ModelError: a model that cannot be built or does not fit the data.
        PrunevoError: training diverged (a non-finite loss).

    Example (one epoch of LeNet-5 on the embedded digits, 2 s on a CPU):
        >>> import tempfile
        >>> from prunevo import FitConfig, Setup, TrainConfig, train_base
        >>> config = TrainConfig(setup=Setup(model="lenet5", dataset="digits"), output=tempfile.mkdtemp() + "/base.pt",
        ...                      fit=FitConfig(epochs=1, lr=0.05, lr_schedule="cosine"))
        >>> result = train_base(config)
        >>> result.output == config.output and 0 <= result.val_top1 <= 1
        True
    """
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
