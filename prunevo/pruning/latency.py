"""The one latency harness every report uses: warm-up, then ``torch.utils.benchmark.Timer``'s
``blocked_autorange`` (the median over blocks of timed calls), which is what PyTorch users trust.

CPU timings run with a fixed number of intra-op threads (``Timer(num_threads=...)``, recorded in the
result); the Timer synchronizes the GPU around every block, so queued kernels are not mistaken for fast
ones.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

from prunevo.errors import PrunevoError


@dataclass(frozen=True)
class LatencySpec:
    """How latency is measured: the median milliseconds of a forward pass (``torch.utils.benchmark``'s way).

    Attributes:
        batch_sizes: the batch sizes timed.
        warmup: untimed passes first.
        repeats: at least this many timed blocks (the median is kept).
        threads: CPU intra-op threads; None: torch's current setting.
        min_run_time: seconds of timing per batch size, at least.

    Raises:
        PrunevoError: no batch size, or a value outside its range.

    Example:
        >>> from prunevo import LatencySpec
        >>> LatencySpec(batch_sizes=(1,)).repeats
        10
        >>> LatencySpec(batch_sizes=())
        Traceback (most recent call last):
        ...
        prunevo.errors.PrunevoError: latency.batch_sizes must be one or more sizes >= 1, got ()
    """

    batch_sizes: tuple[int, ...] = (1, 64)
    warmup: int = 3
    repeats: int = 10
    threads: int | None = None
    min_run_time: float = 0.2

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise PrunevoError(f"{{param:latency.batch_sizes}} must be one or more sizes >= 1, got "
                               f"{self.batch_sizes!r}")
        for name, value, low in (("warmup", self.warmup, 0), ("repeats", self.repeats, 1),
                                 ("min_run_time", self.min_run_time, 0)):
            if value < low:
                raise PrunevoError(f"latency {name} must be >= {low}, got {value}")
        if self.threads is not None and self.threads < 1:
            raise PrunevoError(f"latency threads must be >= 1 (or None: torch's setting), got {self.threads}")


@dataclass
class Latency:
    """Median milliseconds per forward pass, by device and batch size."""

    device: str
    threads: int | None
    median_ms: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _benchmark():
    """``torch.utils.benchmark``, imported on first use: importing it probes for a CUDA toolkit and logs a
    warning on machines without one, which must not reach every command's output."""
    import logging

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import benchmark

    return benchmark


@torch.no_grad()
def _time(model: nn.Module, x: torch.Tensor, spec: LatencySpec, threads: int) -> float:
    for _ in range(spec.warmup):
        model(x)
    timer = _benchmark().Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads)
    once = timer.timeit(1).median
    # at least ``repeats`` blocks, and at least ``min_run_time`` of timing in all
    return timer.blocked_autorange(min_run_time=max(spec.min_run_time, spec.repeats * once)).median * 1000


def _time_cuda(model: nn.Module, x: torch.Tensor, spec: LatencySpec) -> float:
    # cuDNN picks kernels by autotuning (as deployment would): pruned nets have unusual channel counts whose
    # default heuristic kernels can be slower than the unpruned net's; the tuning happens during warm-up
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        return _time(model, x, replace(spec, warmup=max(spec.warmup, 10)), torch.get_num_threads())
    finally:
        torch.backends.cudnn.benchmark = before


def measure_latency(model: nn.Module, input_shape: tuple[int, ...], device: str = "cpu",
                    spec: LatencySpec = LatencySpec(), channels_last: bool = False) -> Latency:
    """Latency of ``model`` in eval mode on ``device`` for every batch size of ``spec``."""
    was_training = model.training
    model.eval()
    dev = torch.device(device)
    is_cuda = dev.type == "cuda"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(dev, memory_format=memory_format)
    threads = None if is_cuda else (spec.threads or torch.get_num_threads())
    result = Latency(str(dev), threads)
    try:
        for batch in spec.batch_sizes:
            x = torch.randn(batch, *input_shape, device=dev).contiguous(memory_format=memory_format)
            ms = _time_cuda(model, x, spec) if is_cuda else _time(model, x, spec, threads)
            result.median_ms[batch] = round(ms, 4)
    finally:
        model.to("cpu", memory_format=torch.contiguous_format)
        model.train(was_training)
    return result
