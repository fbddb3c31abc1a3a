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
from prunevo.progress import track
from prunevo.pruning.groups import ChannelGroup, Member
from prunevo.pruning.statistics import (
    calibration_pass,
    calibration_step,
    group_index,
    has_trainable_weights,
    pairs_of,
    tracked,
)
from prunevo.utils import probe


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


def _called_more_than_once(model: nn.Module, hooked: dict[str, nn.Module], x: torch.Tensor) -> set[str]:
    """The layers whose module runs more than once in a forward pass of ``x`` (one image: cheap)."""
    counts: dict[str, int] = {}
    probe(model, x, hooked, lambda layer, _i, _o: counts.__setitem__(layer, counts.get(layer, 0) + 1))
    return {layer for layer, n in counts.items() if n > 1}


def stream_reductions(model: nn.Module, groups: list[ChannelGroup], x: torch.Tensor, y: torch.Tensor,
                      num_classes: int, nodes: list[Node], batch_size: int, progress: bool = False) -> Reductions:
    """Accumulate ``nodes`` (boundary nodes, each with one feature-map argument) over ``x`` in chunks of
    ``batch_size`` images; one forward pass per chunk, plus a backward pass when a node reads ``G``.
    ``progress``: show the chunks (``prunevo.progress``)."""
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
        trainable = has_trainable_weights(modules[member.bn or member.layer])

        def on_gradient(grad: torch.Tensor) -> None:
            reached.add(member.layer)
            reduce(member, backward_nodes, {"F": pending.pop(member.layer), "G": _channel_first(grad.detach())})

        def on_output(_module, inputs, output):
            feature = _channel_first(torch.relu(output.detach()))
            if forward_nodes:
                reduce(member, forward_nodes, {"F": feature})
            if backward_nodes:
                pending[member.layer] = feature
                output = tracked(output, inputs, trainable)
                if output.requires_grad:
                    output.register_hook(on_gradient)
            return output
        return on_output

    def shared_hook_for(member: Member, calls: dict[str, list]):
        """A module called more than once per forward pass (weight sharing): its calls are joined along the
        spatial axis, as the whole-tensor statistics join them, and reduced once the chunk's pass is over."""
        trainable = has_trainable_weights(modules[member.bn or member.layer])

        def on_output(_module, inputs, output):
            record = calls.setdefault(member.layer, {"F": [], "G": {}})
            call = len(record["F"])
            record["F"].append(_channel_first(torch.relu(output.detach())))
            if backward_nodes:
                output = tracked(output, inputs, trainable)
                if output.requires_grad:
                    output.register_hook(lambda grad: record["G"].__setitem__(call, _channel_first(grad.detach())))
            return output
        return on_output

    def reduce_shared(calls: dict[str, dict]) -> None:
        for layer, record in calls.items():
            feature = torch.cat(record["F"], 2)
            if forward_nodes:
                reduce(hooked[layer], forward_nodes, {"F": feature})
            if backward_nodes:
                if record["G"]:
                    reached.add(layer)
                    grad = torch.cat([record["G"].get(k, torch.zeros_like(f)) for k, f in enumerate(record["F"])], 2)
                else:
                    grad = feature.new_zeros(feature.shape[0], feature.shape[1], 1)
                reduce(hooked[layer], backward_nodes, {"F": feature, "G": grad})
        calls.clear()

    pending: dict[str, torch.Tensor] = {}
    calls: dict[str, dict] = {}
    hooked = {m.layer: m for _, m in members}  # one hook per layer, even if two groups name it
    shared = _called_more_than_once(model, {layer: modules[m.bn or m.layer] for layer, m in hooked.items()}, x[:1])
    hooks = [(modules[m.bn or m.layer], shared_hook_for(m, calls) if layer in shared else hook_for(m, pending))
             for layer, m in hooked.items()]
    with calibration_pass(model, hooks):
        for start in track(range(0, len(x), batch_size), "calibrate", "batch", progress, leave=False):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            chunk["onehot"] = nn.functional.one_hot(yb.long(), num_classes)
            calibration_step(model, xb, yb, backward, len(x))
            reduce_shared(calls)
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
