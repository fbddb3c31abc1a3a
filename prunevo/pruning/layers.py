"""Layer pruning (LayerPrune, Elkerdawy et al. 2020): remove whole residual blocks or plain conv layers.

A *unit* is something that can be replaced by the identity without changing any shape:
- a residual block with an identity shortcut (torchvision ResNet ``BasicBlock``/``Bottleneck`` without
  ``downsample``, MobileNetV2/EfficientNet blocks with ``use_res_connect``, ConvNeXt ``CNBlock``, the
  zoo's ``BasicBlock`` without a projection): the block then passes its input through;
- a plain ``Conv2d`` inside an ``nn.Sequential`` whose output has its input's shape (same channels,
  stride 1, 'same' padding, not grouped), together with the BatchNorm and activation that follow it.

A unit's score is a reduction (mean by default) of the filter scores of its convolutions under the
criterion; the lowest-scored units go first.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from prunevo.errors import PrunevoError
from prunevo.utils import probe

UNIT_REDUCTIONS = ("mean", "median", "max", "sum")
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.LeakyReLU, nn.ELU, nn.Mish)


def _residual(module: nn.Module) -> bool:
    """Whether ``module`` is a residual block whose shortcut is the identity."""
    kind = type(module).__name__
    if kind in ("BasicBlock", "Bottleneck"):
        shortcut = getattr(module, "shortcut", None)
        return getattr(module, "downsample", None) is None and (shortcut is None or len(shortcut) == 0)
    if kind in ("InvertedResidual", "MBConv", "FusedMBConv"):
        return bool(getattr(module, "use_res_connect", False))
    return kind == "CNBlock"


@dataclass(frozen=True)
class Unit:
    name: str  # the block, or the convolution of a conv-BN-activation triple
    kind: str  # "block" or "conv"
    modules: tuple[str, ...]  # what is replaced by nn.Identity
    layers: tuple[str, ...]  # the convolutions whose filter scores rate the unit


def _shapes(model: nn.Module, example_input: torch.Tensor) -> dict[str, tuple[tuple, tuple]]:
    """(input shape, output shape) of every module that maps one tensor to one tensor."""
    shapes: dict[str, tuple[tuple, tuple]] = {}

    def record(name, inputs, output):
        if inputs and isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor):
            shapes[name] = (tuple(inputs[0].shape), tuple(output.shape))

    probe(model, example_input, {n: m for n, m in model.named_modules() if n}, record)
    return shapes


def _convs_in(module: nn.Module, prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}.{n}" if n else prefix for n, m in module.named_modules() if isinstance(m, nn.Conv2d))


def removable_units(model: nn.Module, example_input: torch.Tensor) -> list[Unit]:
    """Every unit of ``model`` that can become the identity, in module order."""
    shapes = _shapes(model, example_input)
    units: list[Unit] = []
    blocks: list[str] = []
    for name, module in model.named_modules():
        if name and _residual(module) and name in shapes and shapes[name][0] == shapes[name][1]:
            convs = _convs_in(module, name)
            if convs:
                units.append(Unit(name, "block", (name,), convs))
                blocks.append(name)
    for parent_name, parent in model.named_modules():
        if not isinstance(parent, nn.Sequential) or any(parent_name.startswith(b + ".") or parent_name == b
                                                        for b in blocks):
            continue
        children = list(parent.named_children())
        for i, (child_name, conv) in enumerate(children):
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if not (isinstance(conv, nn.Conv2d) and conv.groups == 1 and conv.in_channels == conv.out_channels
                    and full in shapes and shapes[full][0] == shapes[full][1]):
                continue
            modules = [full]
            for follower_name, follower in children[i + 1:]:
                is_bn = isinstance(follower, nn.modules.batchnorm._BatchNorm) and len(modules) == 1
                if not (is_bn or isinstance(follower, _ACTIVATIONS)):
                    break
                modules.append(f"{parent_name}.{follower_name}" if parent_name else follower_name)
                if not is_bn:
                    break
            units.append(Unit(full, "conv", tuple(modules), (full,)))
    return units


def unit_scores(units: list[Unit], filter_scores: dict[str, torch.Tensor], reduction: str = "mean") -> list[float]:
    """One score per unit: ``reduction`` over the filter scores of all its convolutions."""
    if reduction not in UNIT_REDUCTIONS:
        raise PrunevoError(f"unknown layer-score reduction {reduction!r}; allowed: {', '.join(UNIT_REDUCTIONS)}")
    out = []
    for unit in units:
        parts = [filter_scores[layer].double().flatten() for layer in unit.layers if layer in filter_scores]
        if not parts:
            raise PrunevoError(f"no filter scores for the layers of {unit.name!r}")
        values = torch.cat(parts)
        out.append(float(getattr(values, reduction)() if reduction != "median" else values.median()))
    return out


def removal_order(units: list[Unit], scores: list[float]) -> list[Unit]:
    """Least important first; ties by module order (stable)."""
    return [units[i] for i in sorted(range(len(units)), key=lambda i: (scores[i], i))]


def remove_units(model: nn.Module, names: list[str]) -> nn.Module:
    """Replace the modules called ``names`` by ``nn.Identity`` in place; returns ``model``."""
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if not hasattr(parent, child):
            raise PrunevoError(f"the model has no module {name!r} to remove")
        setattr(parent, child, nn.Identity())
    return model
