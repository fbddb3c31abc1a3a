"""The training loop, accuracy and BatchNorm recalibration, on any batch source and device.

Seeded: the same seed, data and device give the same weights (fine-tunes also run on a fixed thread
count, set by the caller).
"""
from __future__ import annotations

from itertools import islice
from typing import Callable, Iterable

import torch
from torch import nn
from torch.optim.swa_utils import update_bn
from torch.utils.data import Dataset

from prunevo.errors import PrunevoError
from prunevo.progress import progress_bar
from prunevo.training.batches import make_loader, seeded_subset
from prunevo.training.config import Accelerator, FitConfig
from prunevo.training.schedules import make_scheduler

CPU = Accelerator("cpu")


def fit(model: nn.Module, dataset: Dataset, config: FitConfig, seed: int, accel: Accelerator = CPU,
        after_step: Callable[[nn.Module], None] | None = None, progress: bool | None = False,
        desc: str = "fine-tune") -> nn.Module:
    """Train ``model`` in place for ``config.epochs`` (fractions allowed) and return it in eval mode."""
    accel.place(model)
    model.train()
    sgd_steps(model.parameters(), lambda x, y: nn.functional.cross_entropy(model(x), y), dataset, config, seed,
              accel, (lambda: after_step(model)) if after_step is not None else None, progress, desc)
    return model.eval()


def sgd_steps(params: Iterable[torch.Tensor], loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              dataset: Dataset, config: FitConfig, seed: int, accel: Accelerator = CPU,
              after_step: Callable[[], None] | None = None, progress: bool | None = False,
              desc: str = "fine-tune") -> None:
    """``config``'s SGD and LR schedule over seeded batches of ``dataset``: the loop of ``fit``, for any loss.
    ``loss_of(x, y)`` may return one loss per stacked model (``training.stacked``); their sum is
    back-propagated, so each model gets the gradient of its own loss.  ``progress`` True or None shows a bar
    on a terminal and a plain line at most every 30 s in a log (``prunevo.progress``); False shows nothing."""
    torch.manual_seed(seed)  # augmentation draws from the global generator
    dataset = seeded_subset(dataset, config.max_samples, seed)
    loader = make_loader(dataset, config.batch_size, True, seed, config.workers, accel.device != "cpu")
    total = round(config.epochs * max(1, len(loader)))
    if total == 0:
        return
    opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                          nesterov=config.nesterov and config.momentum > 0, weight_decay=config.weight_decay)
    scheduler = make_scheduler(opt, config.lr_schedule, total, config.original_schedule)
    step = 0
    bar = progress_bar(total, desc, "step", progress is not False, leave=False)
    while step < total:
        for x, y in loader:
            if step >= total:
                break
            x, y = accel.put(x), y.to(accel.device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            with accel.autocast():
                loss = loss_of(x, y)
            loss.sum().backward()
            opt.step()
            scheduler.step()
            if after_step is not None:
                after_step()
            step += 1
            bar.update(1)
            if step % 50 == 0 and not torch.isfinite(loss).all():  # syncs a GPU: not every step
                raise PrunevoError(f"training diverged (loss {loss.max().item()}) at step {step}; lower {{param:lr}}")
    bar.close()


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, accel: Accelerator = CPU, batch_size: int = 256,
             workers: int = 0) -> dict[str, float]:
    """Top-1 accuracy, and top-5 when there are more than 10 classes."""
    model.eval()
    accel.place(model)
    correct1 = correct5 = seen = classes = 0
    for x, y in make_loader(dataset, batch_size, False, 0, workers, accel.device != "cpu"):
        x, y = accel.put(x), y.to(accel.device)
        with accel.autocast():
            logits = model(x).float()
        classes = logits.shape[1]
        top = logits.topk(min(5, classes), dim=1).indices
        correct1 += (top[:, 0] == y).sum().item()
        correct5 += (top == y[:, None]).any(1).sum().item()
        seen += len(y)
    result = {"top1": correct1 / max(1, seen)}
    if classes > 10:
        result["top5"] = correct5 / max(1, seen)
    return result


def top1(model: nn.Module, dataset: Dataset, accel: Accelerator = CPU) -> float:
    return evaluate(model, dataset, accel)["top1"]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, dataset: Dataset, accel: Accelerator = CPU, batches: int = 16,
                   batch_size: int = 128, seed: int = 0) -> nn.Module:
    """Re-estimate BatchNorm statistics (cumulative average, torch's ``update_bn``) on ``batches`` shuffled
    batches of un-augmented training images (EagleEye); returns the model in eval mode."""
    accel.place(model)
    inputs = (accel.put(x) for x, _ in islice(make_loader(dataset, batch_size, True, seed), batches))
    with accel.autocast():
        update_bn(inputs, model)
    return model.eval()
