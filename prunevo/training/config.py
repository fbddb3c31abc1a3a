"""What a training run uses: the budget (``FitConfig``) and where it runs (``Accelerator``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from prunevo.errors import PrunevoError
from prunevo.training.schedules import BASE_SCHEDULES, SCHEDULES


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """SGD (Nesterov momentum by default) for ``epochs`` with an LR schedule: a fine-tune, or base training.

    Attributes:
        epochs: passes over the training split; fractional for a brief fine-tune that sees part of the data.
        lr: the peak learning rate.
        lr_schedule: ``cosine``, ``step``, ``ft`` (constant small LR), ``slr`` (the original schedule compressed)
            or ``clr`` (cyclical; ``training.schedules``, after Le & Hua, 2021).
        original_schedule: what ``slr`` compresses: the schedule the base net was trained with.
        batch_size: images per step, >= 2 (BatchNorm needs two).
        weight_decay: L2 penalty.
        momentum: SGD momentum.
        nesterov: Nesterov momentum.
        workers: DataLoader worker processes.
        max_samples: train on a fixed subset of this many training images, drawn from the run's seed.

    Raises:
        PrunevoError: an unknown schedule, or a value outside its range.

    Example:
        >>> from prunevo import FitConfig
        >>> FitConfig(epochs=0.25, lr_schedule="cosine").epochs
        0.25
        >>> FitConfig(lr_schedule="warp")
        Traceback (most recent call last):
        ...
        prunevo.errors.PrunevoError: unknown LR schedule 'warp'; allowed: cosine, step, ft, slr, clr
    """

    epochs: float = 1.0
    lr: float = 0.01
    lr_schedule: str = "clr"
    original_schedule: str = "step"  # what SLR compresses: the schedule the base net was trained with
    batch_size: int = 128
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = True
    workers: int = 0
    max_samples: int | None = None

    def __post_init__(self) -> None:
        if self.lr_schedule not in SCHEDULES:
            raise PrunevoError(f"unknown LR schedule {self.lr_schedule!r}; allowed: {', '.join(SCHEDULES)}")
        if self.original_schedule not in BASE_SCHEDULES:
            raise PrunevoError(f"unknown original schedule {self.original_schedule!r}; "
                               f"allowed: {', '.join(BASE_SCHEDULES)}")
        for ok, name, value, allowed in ((self.epochs >= 0, "epochs", self.epochs, ">= 0"),
                                         (self.lr > 0, "lr", self.lr, "> 0"),
                                         (self.batch_size >= 2, "batch_size", self.batch_size, ">= 2")):
            if not ok:
                raise PrunevoError(f"{{param:{name}}} must be {allowed}, got {value}")
        if self.max_samples is not None and self.max_samples < 2:
            raise PrunevoError(f"a training subset needs at least 2 samples, got {self.max_samples}")


@dataclass(frozen=True)
class Accelerator:
    """Where models run.  Code that runs models takes ``resolved()``.

    Attributes:
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        amp: bfloat16 mixed precision (None: on for CUDA).
        channels_last: the channels_last memory format (None: on for CUDA).

    Raises:
        PrunevoError: from ``resolved``, an unknown or unavailable device.

    Example:
        >>> from prunevo import Accelerator
        >>> Accelerator(device="cpu").resolved().use_amp
        False
        >>> Accelerator(device="tpu").resolved()
        Traceback (most recent call last):
        ...
        prunevo.errors.PrunevoError: unknown device 'tpu'; allowed: auto, cpu, cuda, cuda:N
    """

    device: str = "auto"
    amp: bool | None = None
    channels_last: bool | None = None

    def resolved(self) -> "Accelerator":
        """The same with ``device`` resolved (``resolve_device``); raises PrunevoError for an unknown or
        unavailable device."""
        return Accelerator(resolve_device(self.device), self.amp, self.channels_last)

    @property
    def on_cuda(self) -> bool:
        device = resolve_device(self.device) if self.device == "auto" else self.device
        return device.startswith("cuda")

    @property
    def use_amp(self) -> bool:
        return self.amp if self.amp is not None else self.on_cuda

    @property
    def use_channels_last(self) -> bool:
        return self.channels_last if self.channels_last is not None else self.on_cuda

    def autocast(self):
        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        return torch.autocast(kind, dtype=torch.bfloat16, enabled=self.use_amp)

    def put(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.use_channels_last and x.dim() == 4 else x

    def place(self, model: nn.Module) -> nn.Module:
        fmt = torch.channels_last if self.use_channels_last else torch.preserve_format
        return model.to(self.device, memory_format=fmt)


def resolve_device(device: str) -> str:
    """``auto`` = CUDA when available; an unavailable CUDA device is a clear error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PrunevoError(f"{{param:device}} {device!r} requested but CUDA is not available; allowed here: cpu, "
                           f"auto")
    if not (device == "cpu" or device.startswith("cuda")):
        raise PrunevoError(f"unknown device {device!r}; allowed: auto, cpu, cuda, cuda:N")
    return device
