"""The one latency harness every report uses: warm-up, then the median of timed repeats.

CPU timings run with a fixed number of intra-op threads (recorded in the result); GPU timings use CUDA
events around each repeat after a synchronize, so queued kernels are not mistaken for fast ones.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from prunevo.utils import torch_threads


@dataclass(frozen=True)
class LatencySpec:
    batch_sizes: tuple[int, ...] = (1, 64)
    warmup: int = 3
    repeats: int = 10
    threads: int | None = None  # CPU intra-op threads; None = torch's current setting


@dataclass
class Latency:
    """Median milliseconds per forward pass, by device and batch size."""

    device: str
    threads: int | None
    median_ms: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def _time_cpu(model: nn.Module, x: torch.Tensor, spec: LatencySpec) -> float:
    for _ in range(spec.warmup):
        model(x)
    times = []
    for _ in range(spec.repeats):
        start = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


@torch.no_grad()
def _time_cuda(model: nn.Module, x: torch.Tensor, spec: LatencySpec) -> float:
    # cuDNN picks kernels by autotuning (as deployment would): pruned nets have unusual channel counts whose
    # default heuristic kernels can be slower than the unpruned net's; the tuning happens during warm-up
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        return _time_cuda_tuned(model, x, spec)
    finally:
        torch.backends.cudnn.benchmark = before


def _time_cuda_tuned(model: nn.Module, x: torch.Tensor, spec: LatencySpec) -> float:
    for _ in range(max(spec.warmup, 10)):
        model(x)
    torch.cuda.synchronize()
    times = []
    for _ in range(spec.repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        model(x)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


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
        with torch_threads(threads):
            for batch in spec.batch_sizes:
                x = torch.randn(batch, *input_shape, device=dev).contiguous(memory_format=memory_format)
                result.median_ms[batch] = round((_time_cuda if is_cuda else _time_cpu)(model, x, spec), 4)
    finally:
        model.to("cpu", memory_format=torch.contiguous_format)
        model.train(was_training)
    return result
