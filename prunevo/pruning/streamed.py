"""Feature-map statistics in bounded memory: the calibration batch streams through the network in chunks,
and each layer's activations and gradients are reduced into per-channel accumulators as soon as the pass
produces them.

``stream_reductions`` computes the boundary nodes of formulas (see ``primitives.accumulators``) for every
member layer.  A node that reads only ``F`` is reduced inside the layer's forward hook, so no feature map
outlives its layer; a node that reads ``G`` keeps the layer's ``F`` until the backward pass reaches the
layer, then is reduced and both are dropped.  Memory therefore holds one chunk's activations (those
autograd saves, plus the kept ``F``) and the accumulators, whatever the number of calibration images.
Reductions run on the module's own channel order and layout (no copies into group order); the per-channel
results are reordered at the end.  Gradients are those of the mean loss over the whole batch, as in
``gather_stats``, so the results equal the whole-tensor evaluation within floating-point rounding.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from prunevo.primitives.accumulators import Accumulator, evaluate_maps, reads_gradients
from prunevo.primitives.tree import Node
from prunevo.pruning.groups import ChannelGroup, Member
from prunevo.pruning.statistics import calibration_pass, calibration_step, group_index, pairs_of, tracked


@dataclass
class Reductions:
    """``values[(layer, node)]``: a boundary node's result on a member layer's feature maps ([C] or [C, K],
    channels in group order); ``no_gradient``: member layers that the loss gradient does not reach."""

    values: dict[tuple[str, Node], torch.Tensor] = field(default_factory=dict)
    no_gradient: set[str] = field(default_factory=set)
    nodes: set[Node] = field(default_factory=set)  # the nodes ``values`` holds


def _channel_first(t: torch.Tensor) -> torch.Tensor:
    """[n, C, H, W] or [n, C] -> a [C, n, S] view (no copy, in NCHW and channels_last alike)."""
    t = t.transpose(0, 1)
    return t.flatten(2) if t.dim() > 2 else t.unsqueeze(2)


def stream_reductions(model: nn.Module, groups: list[ChannelGroup], x: torch.Tensor, y: torch.Tensor,
                      num_classes: int, nodes: list[Node], batch_size: int) -> Reductions:
    """Accumulate ``nodes`` (boundary nodes, each with one feature-map argument) over ``x`` in chunks of
    ``batch_size`` images; one forward pass per chunk, plus a backward pass when a node reads ``G``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    backward = any(reads_gradients(n) for n in nodes)
    forward_nodes = [n for n in nodes if not reads_gradients(n)]
    backward_nodes = [n for n in nodes if reads_gradients(n)]
    modules = dict(model.named_modules())
    members = [(group, member) for group in groups for member in group.members]
    accumulators = {(m.layer, n): Accumulator(n.name, num_classes) for _, m in members for n in nodes}
    reached: set[str] = set()
    chunk: dict[str, torch.Tensor] = {}  # the current chunk's one-hot labels

    def reduce(member: Member, chosen: list[Node], operands: dict[str, torch.Tensor]) -> None:
        memo: dict[Node, torch.Tensor] = {}
        onehot = chunk["onehot"].to(operands["F"].device, operands["F"].dtype)
        for node in chosen:
            (argument,) = node.args
            accumulators[(member.layer, node)].update(evaluate_maps(argument, operands, memo), onehot)

    def hook_for(member: Member, pending: dict[str, torch.Tensor]):
        def on_gradient(grad: torch.Tensor) -> None:
            reached.add(member.layer)
            reduce(member, backward_nodes, {"F": pending.pop(member.layer), "G": _channel_first(grad.detach())})

        def on_output(_module, _inputs, output):
            feature = _channel_first(torch.relu(output.detach()))
            if forward_nodes:
                reduce(member, forward_nodes, {"F": feature})
            if backward_nodes:
                pending[member.layer] = feature
                output = tracked(output)
                if output.requires_grad:
                    output.register_hook(on_gradient)
            return output
        return on_output

    pending: dict[str, torch.Tensor] = {}
    hooked = {m.layer: m for _, m in members}  # one hook per layer, even if two groups name it
    with calibration_pass(model, [(modules[m.bn or m.layer], hook_for(m, pending)) for m in hooked.values()]):
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            chunk["onehot"] = nn.functional.one_hot(yb.long(), num_classes)
            calibration_step(model, xb, yb, backward, len(x))
            for layer, feature in list(pending.items()):  # the gradient never reached these layers
                zeros = torch.zeros(feature.shape[0], feature.shape[1], 1, device=feature.device, dtype=feature.dtype)
                reduce(hooked[layer], backward_nodes, {"F": pending.pop(layer), "G": zeros})

    result = Reductions(nodes=set(nodes))
    result.no_gradient = {m.layer for _, m in members} - reached if backward else set()
    for group, member in members:
        index = group_index(pairs_of(group, member.layer), group.size)
        for node in nodes:
            value = accumulators[(member.layer, node)].result()
            result.values[(member.layer, node)] = value[index.to(value.device)]
    return result
