"""Model cost: parameters and MACs counted by Torch-Pruning, and a fast MACs estimate under keep-masks.

The estimate counts convolutions (1-d, 2-d, transposed) and linear layers only (where nearly all MACs
are) from the channel counts a selection leaves; it lets a MACs target be searched without pruning a copy
at every step.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch_pruning as tp
from torch import nn

from prunevo.errors import ModelError, PrunevoError, first_line
from prunevo.pruning.groups import ChannelGroup
from prunevo.utils import probe


@dataclass(frozen=True)
class ModelCost:
    params: int
    macs: int


def measure_cost(model: nn.Module, example_input: torch.Tensor, doing: str = "counting the MACs of") -> ModelCost:
    """Parameters and multiply-accumulates of one forward pass on ``example_input`` (batch 1).  ``doing``: what a
    failure of that pass is reported as (``naming_failures``): a pruned copy that cannot run is reported as
    running the pruned version, not as counting."""
    was_training = model.training
    model.eval()
    try:
        with naming_failures(model, doing):
            macs, params = tp.utils.count_ops_and_params(model, example_input[:1])
    finally:
        model.train(was_training)
    return ModelCost(int(params), int(macs))


@contextlib.contextmanager
def naming_failures(model: nn.Module, doing: str) -> Iterator[None]:
    """Run a forward pass of ``model`` inside; any failure becomes one ModelError naming the innermost layer
    that had started and not finished (``doing``: what was being done, e.g. "counting the MACs of")."""
    stack: list[str] = []  # the hooks name their layer themselves: Torch-Pruning counts MACs on a deep copy

    def enter_hook(label: str):
        return lambda _module, _inputs: stack.append(label)

    finished: list[str] = []

    def leave(_module, _inputs, _output):
        if stack:
            finished[:] = [stack.pop()]

    modules = [(m, f"{n!r} ({type(m).__name__})") for n, m in model.named_modules() if n]
    handles = [m.register_forward_pre_hook(enter_hook(label)) for m, label in modules]
    handles += [m.register_forward_hook(leave) for m, _ in modules]
    try:
        yield
    except PrunevoError:
        raise
    except Exception as exc:  # a layer's own error, whatever its type: name the layer, keep the cause
        where = f" in layer {stack[-1]}" if stack else f" after layer {finished[0]}" if finished else ""
        raise ModelError(f"{doing} the model failed{where}: {type(exc).__name__}: {first_line(exc)}") from None
    finally:
        for h in handles:
            h.remove()


@dataclass(frozen=True)
class _Layer:
    name: str
    out_channels: int
    in_channels: int
    groups: int
    macs_per_pair: int  # MACs per (output channel, input channel of its group) pair


class MacsEstimator:
    """MACs of conv and linear layers after removing the channels of a selection (no copy, no tracing)."""

    def __init__(self, model: nn.Module, groups: list[ChannelGroup], example_input: torch.Tensor):
        self.groups = groups
        positions: dict[str, int] = {}  # output positions per sample (input positions for a transposed conv)

        def count(name, inputs, output):
            transposed = getattr(layers[name], "transposed", False)
            positions[name] = (inputs[0] if transposed else output)[0, 0].numel()

        layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))}
        probe(model, example_input, layers, count)
        self.layers = []
        for name, m in model.named_modules():
            if name not in positions:
                continue
            if isinstance(m, nn.modules.conv._ConvNd):
                kk = math.prod(m.kernel_size)
                self.layers.append(_Layer(name, m.out_channels, m.in_channels, m.groups, kk * positions[name]))
            else:
                self.layers.append(_Layer(name, m.out_features, m.in_features, 1, 1))
        self.full = self.estimate(None)

    def _removed(self, keep: list[torch.Tensor] | None) -> dict[tuple[str, str], set[int]]:
        removed: dict[tuple[str, str], set[int]] = {}
        if keep is None:
            return removed
        for group, mask in zip(self.groups, keep):
            gone = set(torch.nonzero(~mask).flatten().tolist())
            if not gone:
                continue
            for name, kind, pairs in group.touches:
                removed.setdefault((name, kind), set()).update(i for i, r in pairs if r in gone)
        return removed

    def estimate(self, keep: list[torch.Tensor] | None) -> int:
        removed = self._removed(keep)
        total = 0
        for layer in self.layers:
            out = layer.out_channels - len(removed.get((layer.name, "out"), ()))
            if layer.groups > 1 and layer.groups == layer.in_channels:  # depthwise: one input per output
                total += out * layer.macs_per_pair
                continue
            cin = layer.in_channels - len(removed.get((layer.name, "in"), ()))
            total += out * (cin // layer.groups) * layer.macs_per_pair
        return total

    def fraction(self, keep: list[torch.Tensor] | None) -> float:
        return self.estimate(keep) / max(1, self.full)
