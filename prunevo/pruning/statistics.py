"""Gather the operands of every member layer on a class-stratified calibration batch.

One forward and one backward pass with hooks: weights are read directly, activations and gradients are
caught on each member's BatchNorm output (or on the layer's own output when it has no BatchNorm).

For Domino-io, each *consumer* of a group also gets statistics, so that the formula scores its input
channels: its ``W`` is the consumer's weights that read channel c, its ``Wn`` the producer's filter, and
``F``, ``G``, ``gamma``, ``beta`` are the producer's (the consumer reads exactly that feature map).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from prunevo.errors import ModelError
from prunevo.primitives.grammar import OPERAND_SPECS
from prunevo.primitives.operands import LayerStats
from prunevo.pruning.groups import ChannelGroup, Member


def _channel_major(t: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] or [N, C] -> [C, N, S]."""
    t = t.reshape(t.shape[0], t.shape[1], -1)
    return t.permute(1, 0, 2).contiguous()


def _joined_calls(record: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(F, G) as [C, N, S] of a layer's calls in one forward pass, joined along the spatial axis.

    A module called k times (weight sharing) gives every channel k feature maps per image: each call's
    positions become more positions of the same sample, so a channel's statistics cover all its uses, and
    each F stays paired with its own call's G.  A call the gradient does not reach has G = 0 there; a layer no
    gradient reaches at all gets a [C, N, 1] zero placeholder."""
    features = [_channel_major(f) for f in record["F"]]
    feature = torch.cat(features, 2) if len(features) > 1 else features[0]
    if not record["G"]:
        return feature, torch.zeros(feature.shape[0], feature.shape[1], 1, device=feature.device)
    grads = [_channel_major(record["G"][k]) if k in record["G"] else torch.zeros_like(f)
             for k, f in enumerate(features)]
    return feature, torch.cat(grads, 2) if len(grads) > 1 else grads[0]


def group_index(pairs, size: int) -> torch.Tensor:
    """``index[c]``: the module channel that is channel ``c`` of the group (root order)."""
    index = torch.full((size,), -1, dtype=torch.long)
    for idx, root_idx in pairs:
        index[root_idx] = idx
    if bool((index < 0).any()):  # a gap would silently read another channel's row
        missing = torch.nonzero(index < 0).flatten().tolist()
        raise ModelError(f"the dependency graph maps no channel of this layer to group channels {missing[:8]}")
    return index


def _rows_for_group(tensor: torch.Tensor, pairs, size: int) -> torch.Tensor:
    """Reorder a per-channel tensor of a module into the group's channel order (root index)."""
    return tensor[group_index(pairs, size).to(tensor.device)]


def pairs_of(group: ChannelGroup, layer: str, kind: str = "out"):
    for name, k, pairs in group.touches:
        if name == layer and k == kind:
            return pairs
    return tuple((i, i) for i in range(group.size))


def _consumer_rows(modules: dict[str, nn.Module], group: ChannelGroup, consumer) -> torch.Tensor | None:
    """[C, ...]: the weights of ``consumer`` that read each channel of the group, or None if uneven."""
    widths = {len(c) for c in consumer.columns}
    module = modules[consumer.layer]
    if len(widths) != 1 or 0 in widths or (isinstance(module, nn.Conv2d) and module.groups > 1):
        return None  # a split, or a depthwise/grouped conv: not one row of inputs per channel
    cols = torch.tensor(consumer.columns)  # [C, k]
    w = module.weight.detach().transpose(0, 1)  # [in, out, ...]
    return w[cols.flatten()].reshape(group.size, -1)


def _next_weights(modules: dict[str, nn.Module], group: ChannelGroup) -> torch.Tensor | None:
    parts = [r for r in (_consumer_rows(modules, group, c) for c in group.consumers) if r is not None]
    return torch.cat(parts, dim=1) if parts else None


LEVELS = ("weights", "activations", "gradients")  # what a calibration pass computes, cheapest first


def needed_level(operands: frozenset[str]) -> str:
    """The cheapest pass that yields ``operands`` (``LEVELS``), from what each operand needs
    (``registry.Operand.needs``): weights need none, ``F`` a forward pass, ``G`` a backward one."""
    needs = {OPERAND_SPECS[name].needs for name in operands if name in OPERAND_SPECS}
    return "gradients" if "backward" in needs else "activations" if "forward" in needs else "weights"


def gather_stats(model: nn.Module, groups: list[ChannelGroup], x: torch.Tensor, y: torch.Tensor,
                 num_classes: int, consumers: bool = False, level: str = "gradients") -> list[list[LayerStats]]:
    """``stats[g][m]``: the statistics of member ``m`` of group ``g``, channels in group order.

    ``level`` (``LEVELS``) says how far to go: ``weights`` runs no pass at all (``F`` and ``G`` are empty
    placeholders), ``activations`` a forward pass without autograd (``G`` empty), ``gradients`` a forward
    and a backward pass.  What a level computes is the same at every higher level.
    With ``consumers`` (Domino-io), each group's list continues with one entry per consumer layer.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown statistics level {level!r}; allowed: {', '.join(LEVELS)}")
    modules = dict(model.named_modules())
    captured: dict[str, dict[str, torch.Tensor]] = {}
    if level != "weights":
        _forward(model, modules, groups, x, y, captured, backward=level == "gradients")

    result = []
    for group in groups:
        wn = _next_weights(modules, group)
        per_member = []
        for member in group.members:
            layer = modules[member.layer]
            pairs = pairs_of(group, member.layer)
            missing = set() if wn is not None else {"Wn"}
            if level == "weights":  # not read by the criterion: placeholders, never reported missing
                feature = grad = torch.zeros(group.size, 1, 1, device=layer.weight.device)
                pairs_f = tuple((i, i) for i in range(group.size))
            else:
                feature, grad = _joined_calls(captured[member.layer])
                if level == "gradients" and not captured[member.layer]["G"]:
                    missing.add("G")
                pairs_f = pairs
            if member.bn is not None and modules[member.bn].weight is not None:  # affine BatchNorm
                bn = modules[member.bn]
                bn_pairs = pairs_of(group, member.bn)
                gamma = _rows_for_group(bn.weight.detach(), bn_pairs, group.size)
                beta = _rows_for_group(bn.bias.detach(), bn_pairs, group.size)
            else:
                gamma = torch.ones(group.size, device=layer.weight.device)
                beta = torch.zeros(group.size, device=layer.weight.device)
                missing |= {"gamma", "beta"}
            per_member.append(LayerStats(
                W=_rows_for_group(layer.weight.detach().reshape(layer.weight.shape[0], -1), pairs, group.size),
                Wn=wn if wn is not None else torch.zeros(group.size, 1, device=layer.weight.device),
                F=_rows_for_group(feature, pairs_f, group.size),
                G=_rows_for_group(grad, pairs_f, group.size),
                gamma=gamma, beta=beta, labels=y, num_classes=num_classes, missing=frozenset(missing),
            ))
        if consumers:
            producer = per_member[0]
            for consumer in group.consumers:
                rows = _consumer_rows(modules, group, consumer)
                if rows is not None:
                    per_member.append(LayerStats(W=rows, Wn=producer.W, F=producer.F, G=producer.G,
                                                 gamma=producer.gamma, beta=producer.beta, labels=y,
                                                 num_classes=num_classes, missing=producer.missing - {"Wn"}))
        result.append(per_member)
    return result


@contextmanager
def calibration_pass(model: nn.Module, hooks: list[tuple[nn.Module, Callable]]) -> Iterator[None]:
    """Eval mode with ``hooks`` (module, forward hook) registered and the parameters frozen, so that a
    backward pass computes activation gradients only (no weight-gradient work or memory); all undone after."""
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    was_training = model.training
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    try:
        for p in trainable:
            p.requires_grad_(False)
        yield
    finally:
        for h in handles:
            h.remove()
        for p in trainable:
            p.requires_grad_(True)
        model.train(was_training)


def tracked(output: torch.Tensor, inputs: tuple, trainable: bool) -> torch.Tensor:
    """``output`` such that the loss gradient reaches it exactly when it would in plain PyTorch.

    The calibration pass freezes the parameters and lets the gradient in through the input, so a block run
    under ``torch.no_grad()`` cuts every layer after it off the loss; in plain PyTorch a layer with
    trainable weights (``trainable``, as they were before the pass) after such a block still outputs a tensor
    that requires grad.  A fresh leaf with the same values restores exactly that.  A layer whose input needs
    the gradient but whose output does not was itself run under no_grad or detached: no G, as in PyTorch."""
    if output.requires_grad or not torch.is_grad_enabled() or not trainable:
        return output
    if any(isinstance(i, torch.Tensor) and i.requires_grad for i in inputs):
        return output
    return output.detach().requires_grad_(True)


def has_trainable_weights(module: nn.Module) -> bool:
    """Whether ``module``'s own parameters train (read before the calibration pass freezes them)."""
    return any(p.requires_grad for p in module.parameters(recurse=False))


def calibration_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, backward: bool, total: int) -> None:
    """One forward pass of ``x`` (inside ``calibration_pass``) and, with ``backward``, the backward pass of
    the mean loss over ``total`` samples: a chunk of a batch gets the gradients the whole batch would give."""
    if not backward:
        with torch.no_grad():
            model(x)
        return
    with torch.enable_grad():  # the input requires the gradient, the frozen parameters do not
        loss = nn.functional.cross_entropy(model(x.detach().requires_grad_(True)), y, reduction="sum") / total
        if loss.requires_grad:  # else no layer's output reaches the loss through autograd: no G anywhere
            loss.backward()


def _forward(model: nn.Module, modules: dict[str, nn.Module], groups: list[ChannelGroup], x: torch.Tensor,
             y: torch.Tensor, captured: dict[str, dict[str, torch.Tensor]], backward: bool) -> None:
    """One calibration pass: each member's activation (ReLU of its BatchNorm output) and, with ``backward``,
    the gradient of the mean loss with respect to it."""

    def hook_for(member: Member):
        trainable = has_trainable_weights(modules[member.bn or member.layer])

        def hook(_module, inputs, output):
            # a module called more than once (weight sharing) records every call: see _joined_calls
            record = captured.setdefault(member.layer, {"F": [], "G": {}})
            call = len(record["F"])
            record["F"].append(torch.relu(output.detach()))
            if backward:
                output = tracked(output, inputs, trainable)
                if output.requires_grad:
                    output.register_hook(lambda grad: record["G"].__setitem__(call, grad.detach()))
            return output
        return hook

    hooked = {m.layer: m for group in groups for m in group.members}  # one hook per layer, even if two groups name it
    hooks = [(modules[m.bn or m.layer], hook_for(m)) for m in hooked.values()]
    with calibration_pass(model, hooks):
        calibration_step(model, x, y, backward, len(x))
