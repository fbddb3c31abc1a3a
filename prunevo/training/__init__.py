"""Training and evaluation, shared by fitness (in-memory tensors) and transfer (any ``Dataset``).

One loop (``fit``), one BatchNorm recalibration (torch's ``update_bn``), one accuracy function and one
budget dataclass (``FitConfig``); in-memory tensors are just the fastest batch source.
"""
from prunevo.training.batches import TensorBatches, make_loader, seeded_subset
from prunevo.training.config import Accelerator, FitConfig, resolve_device
from prunevo.training.loop import evaluate, fit, recalibrate_bn, top1

__all__ = ["Accelerator", "FitConfig", "TensorBatches", "evaluate", "fit", "make_loader", "recalibrate_bn",
           "resolve_device", "seeded_subset", "top1"]
