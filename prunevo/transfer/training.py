"""Training and evaluation over DataLoaders, on CPU or GPU (AMP with bfloat16 and channels_last there).

Used for base training (``prunevo train``) and for fine-tuning after pruning.  Seeded: the same seed,
data and device give the same weights.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from prunevo.errors import PrunevoError
from prunevo.pruning.schedules import BASE_SCHEDULES, SCHEDULES, lr_factor


@dataclass(frozen=True)
class FitConfig:
    """SGD (Nesterov momentum by default) for ``epochs`` with an LR schedule (see pruning.schedules)."""

    epochs: float = 1.0
    lr: float = 0.01
    lr_schedule: str = "clr"
    original_schedule: str = "step"  # what SLR compresses: the schedule the base net was trained with
    batch_size: int = 128
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = True
    workers: int = 0

    def __post_init__(self) -> None:
        if self.lr_schedule not in SCHEDULES:
            raise PrunevoError(f"unknown LR schedule {self.lr_schedule!r}; allowed: {', '.join(SCHEDULES)}")
        if self.original_schedule not in BASE_SCHEDULES:
            raise PrunevoError(f"unknown original schedule {self.original_schedule!r}; "
                               f"allowed: {', '.join(BASE_SCHEDULES)}")
        if self.epochs < 0 or self.lr <= 0 or self.batch_size < 2:
            raise PrunevoError("epochs must be >= 0, lr > 0 and batch size >= 2")


@dataclass(frozen=True)
class Accelerator:
    """Where to run: ``device`` plus mixed precision and memory format (both default to on for CUDA)."""

    device: str = "cpu"
    amp: bool | None = None
    channels_last: bool | None = None

    @property
    def use_amp(self) -> bool:
        return self.amp if self.amp is not None else self.device.startswith("cuda")

    @property
    def use_channels_last(self) -> bool:
        return self.channels_last if self.channels_last is not None else self.device.startswith("cuda")

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
        raise PrunevoError(f"device {device!r} requested but CUDA is not available; allowed here: cpu, auto")
    if not (device == "cpu" or device.startswith("cuda")):
        raise PrunevoError(f"unknown device {device!r}; allowed: auto, cpu, cuda, cuda:N")
    return device


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int, workers: int = 0,
                pin: bool = False) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=gen, num_workers=workers,
                      pin_memory=pin, drop_last=shuffle and len(dataset) > batch_size,
                      persistent_workers=workers > 0)


def fit(model: nn.Module, dataset: Dataset, config: FitConfig, seed: int, accel: Accelerator = Accelerator(),
        after_step: Callable[[nn.Module], None] | None = None, progress: bool = False,
        desc: str = "fine-tune") -> nn.Module:
    """Train ``model`` in place for ``config.epochs`` (fractions allowed) and return it in eval mode."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)  # augmentation draws from the global generator
    loader = make_loader(dataset, config.batch_size, True, seed, config.workers, accel.device != "cpu")
    steps_per_epoch = max(1, len(loader))
    total = round(config.epochs * steps_per_epoch)
    if total == 0:
        return model.eval()
    accel.place(model)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          nesterov=config.nesterov and config.momentum > 0, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(config.lr_schedule, (s + 0.5) / total, config.original_schedule))
    model.train()
    step = 0
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
    while step < total:
        for x, y in loader:
            if step >= total:
                break
            x, y = accel.put(x), y.to(accel.device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            with accel.autocast():
                loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            sched.step()
            if after_step is not None:
                after_step(model)
            step += 1
            bar.update(1)
            if step % 50 == 0 and not math.isfinite(loss.item()):  # .item() syncs a GPU: not every step
                raise PrunevoError(f"training diverged (loss {loss.item()}) at step {step}; lower --lr")
    bar.close()
    return model.eval()


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, accel: Accelerator = Accelerator(), batch_size: int = 256,
             workers: int = 0) -> dict[str, float]:
    """Top-1 accuracy, and top-5 when there are more than 10 classes."""
    model.eval()
    accel.place(model)
    correct1 = correct5 = seen = 0
    for x, y in make_loader(dataset, batch_size, False, 0, workers, accel.device != "cpu"):
        x, y = accel.put(x), y.to(accel.device)
        with accel.autocast():
            logits = model(x).float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == y).sum().item()
        correct5 += (top == y[:, None]).any(1).sum().item()
        seen += len(y)
    result = {"top1": correct1 / max(1, seen)}
    if logits.shape[1] > 10:
        result["top5"] = correct5 / max(1, seen)
    return result


@torch.no_grad()
def recalibrate_bn(model: nn.Module, dataset: Dataset, accel: Accelerator = Accelerator(), batches: int = 16,
                   batch_size: int = 128, seed: int = 0) -> None:
    """Re-estimate BatchNorm statistics on a few batches of un-augmented training images (EagleEye)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches
    accel.place(model)
    model.train()
    for i, (x, _) in enumerate(make_loader(dataset, batch_size, True, seed)):
        if i >= batches:
            break
        with accel.autocast():
            model(accel.put(x))
    for bn in bns:
        bn.momentum = 0.1
    model.eval()
