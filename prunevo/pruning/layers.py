"""Layer pruning (LayerPrune, Elkerdawy et al. 2020): remove whole residual blocks or plain conv layers.

A *unit* is something that can be replaced by the identity without changing any shape:
- a residual block with an identity shortcut, recognised by what it computes (its output is its input
  added to something, possibly behind an activation: torchvision's and timm's ResNet, MobileNet,
  EfficientNet and ConvNeXt blocks without a projection, a user's own): the block then passes its input
  through;
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


# autograd nodes that may follow a block's shortcut add without changing what the shortcut is (the final
# activation of a ResNet block, an in-place add's copy)
_AFTER_ADD = ("Relu", "Relu6", "Silu", "Hardswish", "Gelu", "LeakyRelu", "Elu", "Mish", "Clone", "Hardtanh")


def _identity_shortcut(block: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``block`` adds its input, unchanged, to what it computes: ``act(f(x) + x)`` or ``f(x) + x``.

    Read from the autograd graph of one call on ``x`` (the input the block received in the model), so any
    class -- torchvision's ``BasicBlock``/``InvertedResidual``/``CNBlock``, timm's blocks with ``has_skip``,
    a user's own -- is recognised by what it computes, not by its attributes."""
    leaf = x.detach().clone().requires_grad_(True)
    start = leaf.clone()  # a node of its own: an in-place add on the input still shows as an edge to it
    was_training = block.training
    block.eval()
    try:
        with torch.enable_grad():
            out = block(start)
    except Exception:  # noqa: BLE001  a block that needs more than one tensor is no unit
        return False
    finally:
        block.train(was_training)
    node = getattr(out, "grad_fn", None)
    for _ in range(4):  # the add, possibly behind an activation
        if node is None:
            return False
        name = type(node).__name__
        if name.startswith("AddBackward"):
            # an operand without a gradient (a constant, a buffer) has no node: None, which is not the input
            return any(f is not None and (f is start.grad_fn or _is_leaf_edge(f, leaf)) for f, _ in node.next_functions)
        if not name.startswith(_AFTER_ADD) or not node.next_functions:
            return False
        node = node.next_functions[0][0]
    return False


def _is_leaf_edge(node, leaf: torch.Tensor) -> bool:
    """``node`` is the input itself: its CloneBackward (``start``) or the leaf's AccumulateGrad."""
    if getattr(node, "variable", None) is leaf:
        return True
    return type(node).__name__.startswith("CloneBackward") and any(
        getattr(f, "variable", None) is leaf for f, _ in node.next_functions if f is not None)


@dataclass(frozen=True)
class Unit:
    name: str  # the block, or the convolution of a conv-BN-activation triple
    kind: str  # "block" or "conv"
    modules: tuple[str, ...]  # what is replaced by nn.Identity
    layers: tuple[str, ...]  # the convolutions whose filter scores rate the unit


def _shapes(model: nn.Module, example_input: torch.Tensor) -> tuple[dict[str, tuple[tuple, tuple]],
                                                                     dict[str, torch.Tensor]]:
    """(input shape, output shape) of every module that maps one tensor to one tensor, and that input."""
    shapes: dict[str, tuple[tuple, tuple]] = {}
    inputs_of: dict[str, torch.Tensor] = {}

    def record(name, inputs, output):
        if len(inputs) == 1 and isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor):
            shapes[name] = (tuple(inputs[0].shape), tuple(output.shape))
            if shapes[name][0] == shapes[name][1]:
                inputs_of[name] = inputs[0].detach()

    probe(model, example_input, {n: m for n, m in model.named_modules() if n}, record)
    return shapes, inputs_of


def _convs_in(module: nn.Module, prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}.{n}" if n else prefix for n, m in module.named_modules() if isinstance(m, nn.Conv2d))


def removable_units(model: nn.Module, example_input: torch.Tensor) -> list[Unit]:
    """Every unit of ``model`` that can become the identity, in module order."""
    shapes, inputs_of = _shapes(model, example_input)
    units: list[Unit] = []
    blocks: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(b + ".") for b in blocks):
            continue  # inside a block already found: its parts are not units of their own
        if name in inputs_of and _convs_in(module, name) and _identity_shortcut(module, inputs_of[name]):
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
