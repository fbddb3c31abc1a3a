"""Channel groups: the sets of channels that must be removed together, from Torch-Pruning's DependencyGraph.

A group is computed once per network and stored by module *names*, so it applies to any copy of that
network.  Residual adds couple the output channels of several convolutions; they form one group with
several *members* (the layers that produce the channels) and share one keep/remove decision.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch_pruning as tp
from torch import nn

from prunevo.errors import ModelError, first_line
from prunevo.utils import probe

PRODUCER_TYPES = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class Member:
    """A layer that produces the group's channels, and the BatchNorm right after it (if any)."""

    layer: str
    bn: str | None


@dataclass(frozen=True)
class Consumer:
    """A layer that reads the group's channels: ``columns[c]`` are its input indices fed by channel c."""

    layer: str
    columns: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class ChannelGroup:
    index: int
    root: str
    size: int
    members: tuple[Member, ...]
    consumers: tuple[Consumer, ...]
    # every (module name, handler kind, [(idx, root_idx)...]) of the TP group, for masking
    touches: tuple[tuple[str, str, tuple[tuple[int, int], ...]], ...] = field(repr=False)
    # a grouped (not depthwise) convolution reads or writes these channels: ties[c] is channel c's position
    # in its slice, and a position is kept or removed in every slice together (None: no such convolution)
    ties: tuple[int, ...] | None = field(default=None, repr=False)

    @property
    def slices(self) -> int:
        """How many channels go together (the grouped convolution's groups), 1 for an untied group."""
        return 1 if self.ties is None else self.size // (max(self.ties) + 1)


def _failing_layer(exc: BaseException, model: nn.Module) -> str | None:
    """The module next to the graph node Torch-Pruning was processing when it failed, if any."""
    names = {m: n for n, m in model.named_modules()}
    tb, node = exc.__traceback__, None
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("node")
        if hasattr(candidate, "inputs") and hasattr(candidate, "module"):
            node = candidate
        tb = tb.tb_next
    seen = set()
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if node.module in names and names[node.module]:
            return names[node.module]
        node = node.inputs[0] if node.inputs else None
    return None


def _attention_layer(model: nn.Module) -> tuple[str, str] | None:
    """(name, class) of the first multi-head attention layer: token mixing that channel pruning here does not
    track.  Heads mark it (torch's MultiheadAttention, Swin's and MaxViT's own classes); a CNN's channel or
    spatial "attention" (squeeze-excitation, CBAM) has none and is pruned as the convolutions it is."""
    modules = list(model.named_modules())
    found = next(((n, m) for n, m in modules if isinstance(m, nn.MultiheadAttention)), None) or next(
        ((n, m) for n, m in modules if any(hasattr(m, a) for a in ("num_heads", "n_heads"))), None)
    return (found[0], type(found[1]).__name__) if found else None


def check_prunable(model: nn.Module, name: str = "the model") -> None:
    """Raises ModelError, in one line, for a model that channel pruning here cannot handle at all."""
    attention = _attention_layer(model)
    if attention is not None:
        raise ModelError(f"{name} has attention: layer {attention[0]!r} ({attention[1]}); attention/token models "
                         f"(vision transformers, Swin, MaxViT...) are not supported by channel pruning here; "
                         f"supported: convolutional networks")
    norm = next(((n, m) for n, m in model.named_modules() if isinstance(m, (nn.LayerNorm, nn.GroupNorm))), None)
    if norm is not None:
        # a removed channel changes the mean and variance the others are normalized with, so the pruned
        # network cannot compute what the masked one does, and pruning cannot be verified
        raise ModelError(f"{name} normalizes across channels: layer {norm[0]!r} ({type(norm[1]).__name__}); "
                         f"removing channels would change what the remaining ones compute; supported: "
                         f"BatchNorm or no normalization")


@contextlib.contextmanager
def _no_grad_traced() -> Iterator[None]:
    """``torch.no_grad()`` blocks inside the model's forward (a frozen feature extractor, say) leave gradients
    on while tracing, so their layers stay in the graph; the blocks' effect on values is nil."""
    no_grad = torch.autograd.grad_mode.no_grad
    enter, leave = no_grad.__enter__, no_grad.__exit__
    no_grad.__enter__ = lambda self: None
    no_grad.__exit__ = lambda self, *exc: None
    try:
        yield
    finally:
        no_grad.__enter__, no_grad.__exit__ = enter, leave


def build_dependency_graph(model: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    """Torch-Pruning's DependencyGraph of ``model``.  Raises ModelError (one line, naming the layer where
    tracing stopped) for a model it cannot trace or an attention model."""
    check_prunable(model)
    # the graph is traced through autograd: a frozen layer (requires_grad=False) reading an input that needs
    # no gradient makes no graph node and would vanish from the groups, so every parameter is traced unfrozen
    frozen = [p for p in model.parameters() if not p.requires_grad]
    try:
        for p in frozen:
            p.requires_grad_(True)
        with torch.enable_grad(), _no_grad_traced():  # also when called under no_grad
            return tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
    except Exception as exc:  # tracing failures come in many types; report them as one clear error
        layer = _failing_layer(exc, model)
        where = f" after layer {layer!r}" if layer else ""
        if _failed_in(exc, "update_reshape_index_mapping"):
            where += " at a reshape of the channel dimension (a channel shuffle?) that Torch-Pruning cannot map"
        raise ModelError(f"the pruner cannot trace the channel dependencies of this model{where} "
                         f"({type(exc).__name__}: {first_line(exc)}); supported: convolutions, BatchNorm, residual "
                         f"adds, concatenations, depthwise convolutions, flatten before linear layers") from None
    finally:
        for p in frozen:
            p.requires_grad_(False)


def _failed_in(exc: BaseException, function: str) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == function:
            return True
        tb = tb.tb_next
    return False


def default_ignored(model: nn.Module, example_input: torch.Tensor | None = None) -> list[nn.Module]:
    """The output layer, whose output channels are the classes: found by running ``example_input`` (the layer
    whose output the model returns, else the last Linear or convolution to run), so a squeeze-excitation
    block's Linear registered after the classifier is not taken for it; by registration order without an
    input."""
    if example_input is not None:
        head = _executed_head(model, example_input)
        if head is not None:
            return [head]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return linears[-1:] if linears else convs[-1:]


def _executed_head(model: nn.Module, example_input: torch.Tensor) -> nn.Module | None:
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    calls: list[tuple[nn.Module, torch.Tensor]] = []
    try:
        output = probe(model, example_input, layers, lambda n, _i, out: calls.append((layers[n], out)))
    except Exception:  # noqa: BLE001  the dependency graph's own trace reports what fails, with its layer
        return None
    if not calls:
        return None
    heads = [mod for mod, out in calls if out is output]
    if heads:
        return heads[-1]
    linears = [mod for mod, _ in calls if isinstance(mod, nn.Linear)]
    return (linears or [mod for mod, _ in calls])[-1]


def group_ties(groups: list[ChannelGroup]) -> list[torch.Tensor | None] | None:
    """``ChannelGroup.ties`` as index tensors for ``ranking.fold``; None when no group is tied."""
    if all(g.ties is None for g in groups):
        return None
    return [None if g.ties is None else torch.tensor(g.ties, dtype=torch.long) for g in groups]


def _ties(root: str, size: int, touches, modules: dict[str, nn.Module]) -> tuple[int, ...] | None:
    """Each channel's position in the slices of the grouped convolutions that read or write the group.

    Torch-Pruning prunes a grouped convolution's inputs by keeping the first slice's positions in every
    slice, and its outputs must stay divisible by the groups: so the same positions go in every slice."""
    ties: tuple[int, ...] | None = None
    for name, kind, pairs in touches:
        module = modules.get(name)
        if not isinstance(module, nn.Conv2d) or module.groups == 1 or kind not in ("in", "out"):
            continue
        channels = module.in_channels if kind == "in" else module.out_channels
        if module.groups == module.in_channels == module.out_channels:
            continue  # depthwise: in and out are one channel each, pruned together by Torch-Pruning
        width = channels // module.groups
        position = [-1] * size
        for idx, channel in pairs:
            position[channel] = idx % width
        if -1 in position or len(pairs) != size or size != channels:
            raise ModelError(f"the grouped convolution {name!r} ({module.groups} groups) reads only part of the "
                             f"channels of the group of layer {root!r}; supported: grouped convolutions that read "
                             f"or write a whole group")
        if ties is not None and tuple(position) != ties:
            raise ModelError(f"grouped convolutions around layer {root!r} slice its channels in two different "
                             f"ways ({name!r} is one); they cannot be pruned consistently")
        ties = tuple(position)
    return ties


def named_layers(model: nn.Module, names: tuple[str, ...]) -> list[nn.Module]:
    """The modules called ``names``.  Raises ModelError naming the first unknown one and a few real ones."""
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules or not n]
    if unknown:
        convs = [n for n, m in modules.items() if isinstance(m, (nn.Conv2d, nn.Linear))]
        raise ModelError(f"the model has no layer named {unknown[0]!r}; its convolution and linear layers are "
                         f"named like {', '.join(convs[:4])}{', ...' if len(convs) > 4 else ''} "
                         f"(model.named_modules())")
    return [modules[n] for n in names]


def _kind(graph: tp.DependencyGraph, handler) -> str:
    if graph.is_out_channel_pruning_fn(handler):
        return "out"
    if graph.is_in_channel_pruning_fn(handler):
        return "in"
    return "other"


def _pairs(idxs, size: int) -> tuple[tuple[int, int], ...]:
    """(index in this module, group channel) pairs.

    Groups from ``get_all_groups`` list every channel in root order; an expanded mapping (a flatten
    feeding a Linear) lists ``k`` consecutive indices per channel, so position * size // len is the channel.
    """
    idxs = list(idxs)
    return tuple(
        (int(i.idx), int(i.root_idx)) if hasattr(i, "root_idx") else (int(i), pos * size // len(idxs))
        for pos, i in enumerate(idxs)
    )


def _single_bn_after(graph: tp.DependencyGraph, module: nn.Module, names: dict) -> str | None:
    node = graph.module2node.get(module)
    if node is None or len(node.outputs) != 1:
        return None
    nxt = node.outputs[0].module
    return names.get(nxt) if isinstance(nxt, nn.modules.batchnorm._BatchNorm) else None


def find_groups(model: nn.Module, example_input: torch.Tensor, ignored: list[nn.Module] | None = None,
                keep_layers: tuple[str, ...] = ()) -> list[ChannelGroup]:
    """The prunable channel groups of ``model`` (convolution output channels); ``ignored``: the layers whose
    output channels stay (default: the output layer), plus those named in ``keep_layers`` (module names, as
    Torch-Pruning's ``ignored_layers``).  Raises ModelError for a model it cannot trace or a name it lacks."""
    names = {m: n for n, m in model.named_modules()}
    graph = build_dependency_graph(model, example_input)
    ignored = default_ignored(model, example_input) if ignored is None else ignored
    ignored = [*ignored, *named_layers(model, keep_layers)]
    groups: list[ChannelGroup] = []
    for tp_group in graph.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d]):
        root_module = tp_group[0].dep.target.module
        size = len(tp_group[0].idxs)
        members, consumers, touches = [], [], []
        seen = set()
        for dep, idxs in tp_group:
            module = dep.target.module
            name = names.get(module)
            kind = _kind(graph, dep.handler)
            if name is None or (name, kind) in seen:
                continue
            seen.add((name, kind))
            pairs = _pairs(idxs, size)
            touches.append((name, kind, pairs))
            if kind == "out" and isinstance(module, PRODUCER_TYPES):
                members.append(Member(name, _single_bn_after(graph, module, names)))
            elif kind == "in" and isinstance(module, PRODUCER_TYPES):
                cols: list[list[int]] = [[] for _ in range(size)]
                for idx, root_idx in pairs:
                    cols[root_idx].append(idx)
                consumers.append(Consumer(name, tuple(tuple(c) for c in cols)))
        if not members:
            continue
        ties = _ties(names[root_module], size, touches, dict(model.named_modules()))
        groups.append(ChannelGroup(len(groups), names[root_module], size, tuple(members), tuple(consumers),
                                   tuple(touches), ties))
    if not groups:
        raise ModelError("the model has no prunable convolution channels")
    return groups
