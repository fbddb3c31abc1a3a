"""Channel groups: the sets of channels that must be removed together, from Torch-Pruning's DependencyGraph.

A group is computed once per network and stored by module *names*, so it applies to any copy of that
network.  Residual adds couple the output channels of several convolutions; they form one group with
several *members* (the layers that produce the channels) and share one keep/remove decision.
"""
from __future__ import annotations

import contextlib
import logging
import re
import threading
import warnings
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch_pruning as tp
from torch import nn

from prunevo.errors import ModelError, first_line
from prunevo.utils import probe

log = logging.getLogger(__name__)

# layers whose output channels form groups and whose weights are scored (Conv1d: Torch-Pruning prunes any
# _ConvNd; transposed convolutions keep their outputs, see README "What is pruned")
CONV_TYPES = (nn.Conv1d, nn.Conv2d)
PRODUCER_TYPES = (*CONV_TYPES, nn.Linear)

# Torch-Pruning graph nodes that move channels: the constructs as users write them.  A group whose channels
# pass through one is pruned only if pruning it computes what masking it does (``pruning.prunable``).
CHANNEL_OPS = {
    "_SliceOp": "channel slicing x[:, a:b]",
    "_SplitOp": "a chunk/split of the channels",
    "_UnbindOp": "an unbind of the channels",
    "_ReshapeOp": "a view/reshape of the channel axis",
    "_ExpandOp": "an expand of the channel axis",
}
# autograd functions (``_ElementWiseOp`` nodes, which Torch-Pruning passes channels through unchanged) that
# reorder or regroup channels
CHANNEL_FUNCTIONS = {
    "PixelShuffle": "PixelShuffle", "PixelUnshuffle": "PixelUnshuffle", "ChannelShuffle": "a channel shuffle",
    "Permute": "a permute", "Transpose": "a transpose", "Roll": "a roll", "Flip": "a flip",
    "IndexSelect": "an index_select", "Gather": "a gather", "Index": "indexing",
}


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
    """Output channels that must be removed together: a unit of channel pruning (``find_groups``).

    A residual add joins the outputs of several layers, so channel c of each goes (or stays) together; built from
    Torch-Pruning's dependency graph (``DependencyGraph.get_all_groups``).

    Attributes:
        index: its position in ``find_groups``' list.
        root: the layer Torch-Pruning's group starts from (its name in ``model.named_modules()``).
        size: its number of channels, C.
        members: the layers that produce the channels (with the BatchNorm right after each); criteria score each
            and combine the scores.
        consumers: the layers that read them, with the input columns each channel feeds (``Wn``).
        touches: every (module, handler kind, index pairs) of the group, for masking.
        ties: a grouped (not depthwise) convolution reads or writes these channels: ``ties[c]`` is channel c's
            position in its slice, kept or removed in every slice together (None: no such convolution).
        constructs: constructs the channels pass through (concatenations, shuffles...), for messages.
        problem: why the group cannot be pruned, as the graph shows it (None: nothing seen).
        untracked: parameters outside standard layers that are not per channel, left whole.

    Example:
        >>> import torch
        >>> from prunevo.pruning.groups import find_groups
        >>> from prunevo.zoo.models import build_model
        >>> groups = find_groups(build_model("small-resnet", 10, (1, 8, 8)).eval(), torch.randn(1, 1, 8, 8))
        >>> group = groups[0]  # the last residual stage: its shortcut and its second convolution add up
        >>> group.root, group.size, [member.layer for member in group.members]
        ('layers.3.shortcut.0', 128, ['layers.3.shortcut.0', 'layers.3.conv2'])
    """

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
    # constructs (``CHANNEL_OPS``, ``CHANNEL_FUNCTIONS``) the channels pass through, for messages
    constructs: tuple[str, ...] = ()
    # why the group cannot be pruned, found from the graph alone (None: nothing seen); ``pruning.prunable``
    # leaves such groups whole
    problem: str | None = None
    # parameters and buffers outside standard layers that are not per channel (BiFPN's fusion weights, one per
    # input): left out of the dependency graph, so removing channels never shrinks them; the same for every group
    untracked: tuple[str, ...] = field(default=(), repr=False)

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
    quantized = next(((n, m) for n, m in model.named_modules() if _quantization(m)), None)
    if quantized is not None:
        # fake-quantization observers keep per-channel scales and zero points that Torch-Pruning does not
        # shrink, and a converted model's packed weights cannot be sliced
        raise ModelError(f"{name} is quantized or prepared for quantization-aware training: layer "
                         f"{quantized[0]!r} ({type(quantized[1]).__name__}); prune the float model, then quantize the "
                         f"pruned one (prepare_qat and convert, or quantize_dynamic); supported: float models")
    norm = next(((n, m) for n, m in model.named_modules() if isinstance(m, (nn.LayerNorm, nn.GroupNorm))), None)
    if norm is not None:
        # a removed channel changes the mean and variance the others are normalized with, so the pruned
        # network cannot compute what the masked one does, and pruning cannot be verified
        raise ModelError(f"{name} normalizes across channels: layer {norm[0]!r} ({type(norm[1]).__name__}); "
                         f"removing channels would change what the remaining ones compute; supported: "
                         f"BatchNorm or no normalization")


def _reparametrized(module: nn.Module) -> bool:
    """Whether ``module`` computes a tensor from others on every pass (``torch.nn.utils.parametrize``, or the old
    weight_norm / spectral_norm hooks)."""
    hooks = {type(h).__name__ for h in module._forward_pre_hooks.values()}
    return bool(getattr(module, "parametrizations", None)) or bool(hooks & {"WeightNorm", "SpectralNorm"})


def _quantization(module: nn.Module) -> bool:
    """Whether ``module`` belongs to PyTorch quantization: fake-quantize or observer modules, QAT layers
    (``torch.ao.nn.qat``, ``torch.ao.nn.intrinsic.qat``) or quantized layers."""
    kind = type(module).__module__
    return kind.startswith(("torch.ao.quantization", "torch.ao.nn.qat", "torch.ao.nn.intrinsic.qat",
                            "torch.ao.nn.intrinsic.quantized", "torch.ao.nn.quantized", "torch.nn.quantized",
                            "torch.nn.qat"))


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


def build_dependency_graph(model: nn.Module, example_input: torch.Tensor,
                           untracked: tuple[str, ...] = ()) -> tp.DependencyGraph:
    """Torch-Pruning's DependencyGraph of ``model``.  ``untracked``: names of parameters outside standard
    layers that the graph leaves out (``ChannelGroup.untracked``).  Raises ModelError (one line, naming the
    layer where tracing stopped) for a model it cannot trace or an attention model."""
    check_prunable(model)
    reparametrized = next((n for n, m in model.named_modules() if _reparametrized(m)), None)
    if reparametrized is not None:
        raise ModelError(f"the model has a layer whose weight is computed on every pass (weight or spectral "
                         f"normalization): {reparametrized!r}; fold it into a plain weight first "
                         f"(prunevo.pruning.reparam.fold_reparametrizations(model), as prunevo's own pipeline does)")
    # the graph is traced through autograd: a frozen layer (requires_grad=False) reading an input that needs
    # no gradient makes no graph node and would vanish from the groups, so every parameter is traced unfrozen;
    # an untracked parameter is traced frozen, so it makes no node either
    params = dict(model.named_parameters())
    frozen = [p for n, p in params.items() if not p.requires_grad and n not in untracked]
    hidden = [p for n, p in params.items() if p.requires_grad and n in untracked]
    try:
        for p in frozen:
            p.requires_grad_(True)
        for p in hidden:
            p.requires_grad_(False)
        with torch.enable_grad(), _no_grad_traced(), quiet_torch_pruning():  # also when called under no_grad
            return tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
    except Exception as exc:  # tracing failures come in many types; report them as one clear error
        layer = _failing_layer(exc, model)
        where = f" after layer {layer!r}" if layer else ""
        if _failed_in(exc, "update_reshape_index_mapping"):
            where += " at a reshape of the channel dimension (a channel shuffle?) that Torch-Pruning cannot map"
        elif _failed_in(exc, "update_concat_index_mapping"):
            where += " at a concatenation of a tensor whose channels it cannot count (a split or chunk before it?)"
        elif _failed_in(exc, "update_split_index_mapping"):
            where += " at a split/chunk of the channels that Torch-Pruning cannot map"
        raise ModelError(f"the pruner cannot trace the channel dependencies of this model{where} "
                         f"({type(exc).__name__}: {first_line(exc)}); supported: convolutions, BatchNorm, residual "
                         f"adds, concatenations, depthwise convolutions, flatten before linear layers") from None
    finally:
        for p in frozen:
            p.requires_grad_(False)
        for p in hidden:
            p.requires_grad_(True)


@contextlib.contextmanager
def quiet_torch_pruning() -> Iterator[None]:
    """Torch-Pruning's ``UserWarning``s (unwrapped parameters, ...) go to the debug log, not the console:
    prunevo reports what they concern in its own words."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                log.debug("Torch-Pruning: %s", first_line(str(w.message)))


# layers whose tensors Torch-Pruning shrinks itself (their buffers too: BatchNorm's running statistics)
STANDARD_LAYERS = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.PReLU, nn.LayerNorm,
             nn.GroupNorm, nn.Embedding)


@contextlib.contextmanager
def buffers_as_parameters(model: nn.Module) -> Iterator[None]:
    """Floating-point buffers of modules outside standard layers (a registered per-channel ``scale``) are
    parameters for the time inside: Torch-Pruning then traces them as unwrapped parameters and shrinks them
    with their channels (it ignores buffers); afterwards they are buffers again, in the shape pruning left.
    A buffer that is not per channel is found as such and left out (``ChannelGroup.untracked``)."""
    moved: list[tuple[nn.Module, str, bool]] = []
    for module in model.modules():
        if isinstance(module, STANDARD_LAYERS):
            continue
        for name, buffer in list(module._buffers.items()):
            if buffer is None or not buffer.is_floating_point() or buffer.dim() == 0:
                continue
            persistent = name not in module._non_persistent_buffers_set
            del module._buffers[name]
            module._non_persistent_buffers_set.discard(name)
            module.register_parameter(name, nn.Parameter(buffer, requires_grad=False))
            moved.append((module, name, persistent))
    try:
        yield
    finally:
        for module, name, persistent in moved:
            value = module._parameters.pop(name)  # the pruned one, when Torch-Pruning replaced it
            module.register_buffer(name, value.detach().requires_grad_(False), persistent=persistent)


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
    convs = [m for m in model.modules() if isinstance(m, CONV_TYPES)]
    return linears[-1:] if linears else convs[-1:]


def _executed_head(model: nn.Module, example_input: torch.Tensor) -> nn.Module | None:
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Linear, *CONV_TYPES))}
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
        if not isinstance(module, CONV_TYPES) or module.groups == 1 or kind not in ("in", "out"):
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
        convs = [n for n, m in modules.items() if isinstance(m, PRODUCER_TYPES)]
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


def _pairs(idxs, size: int, expanded: bool = True) -> tuple[tuple[int, int], ...]:
    """(index in this module, group channel) pairs.

    Groups from ``get_all_groups`` list every channel in root order.  Without Torch-Pruning's root indices,
    a list of ``k * size`` indices is either an expanded mapping (``expanded``: a flatten feeding a Linear
    lists ``k`` consecutive indices per channel, so position * size // len is the channel) or ``k`` copies of
    the group (a convolution reading it at ``k`` offsets of a concatenation, DLA's Root: position % size).
    """
    idxs = list(idxs)
    return tuple(
        (int(i.idx), int(i.root_idx)) if hasattr(i, "root_idx")
        else (int(i), pos * size // len(idxs) if expanded else pos % size)
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
    """The channel groups of ``model`` (convolution output channels) as the dependency graph sees them;
    ``ignored``: the layers whose output channels stay (default: the output layer), plus those named in
    ``keep_layers`` (module names, as Torch-Pruning's ``ignored_layers``).  A group the graph maps
    inconsistently gets a ``problem``; ``pruning.prunable.prunable_groups`` keeps only groups that prune as
    they mask.  Raises ModelError for a model it cannot trace or a name it lacks."""
    ignored = default_ignored(model, example_input) if ignored is None else ignored
    ignored = [*ignored, *named_layers(model, keep_layers)]
    untracked: tuple[str, ...] = ()
    while True:  # at most twice: once more without the parameters found not to be per channel
        groups, mismatched = _trace_groups(model, example_input, ignored, untracked)
        if not mismatched:
            break
        untracked = (*untracked, *mismatched)
        tensors = {**dict(model.named_buffers()), **dict(model.named_parameters())}
        for name in mismatched:
            log.info("tensor %r (shape %s) is not per channel: it stays whole when channels go", name,
                     list(tensors[name].shape))
    if not groups:
        raise ModelError("the model has no prunable convolution channels")
    return groups


def _channels(module: nn.Module, kind: str) -> int | None:
    """How many channels ``module`` has on the side ``kind`` ("out" or "in"); None when unknown."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.out_channels if kind == "out" else module.in_channels
    if isinstance(module, nn.Linear):
        return module.out_features if kind == "out" else module.in_features
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module.num_features
    return None


def _construct(module) -> str | None:
    """The construct a Torch-Pruning op node stands for (``CHANNEL_OPS``, ``CHANNEL_FUNCTIONS``), or None."""
    kind = type(module).__name__
    if kind in CHANNEL_OPS:
        return CHANNEL_OPS[kind]
    grad_fn = getattr(module, "_grad_fn", None)  # Torch-Pruning keeps the autograd node or its name
    if grad_fn is not None:
        function = grad_fn if isinstance(grad_fn, str) else type(grad_fn).__name__
        return CHANNEL_FUNCTIONS.get(re.sub(r"Backward\d*$", "", function))
    return None


def _problem(touches, size: int, modules: dict[str, nn.Module]) -> str | None:
    """Why the graph's index mapping of a group cannot be right: an index past a layer's channels, or a
    producer that does not give every channel of the group exactly once.  Checked before any index is used."""
    for name, kind, pairs in touches:
        channels = _channels(modules[name], kind)
        if channels is not None and any(not 0 <= i < channels for i, _ in pairs):
            return f"the dependency graph maps its channels past the {channels} {kind}put channels of {name!r}"
        if kind == "out" and isinstance(modules[name], PRODUCER_TYPES):
            if sorted(r for _, r in pairs) != list(range(size)):
                return f"the dependency graph maps its {size} channels unevenly onto {name!r}"
    return None


# dependency items one group's analysis may collect before it is taken to cycle: ordinary groups stay far
# below (ResNeSt-14d peaks near 700, DenseNet-121 near 100), while ReXNet's partial residuals make Torch-Pruning
# propagate forever (16,000 items after 13 s, the analysis being quadratic in them); a work bound, not a time
# one, so that the groups found do not depend on the machine
GROUP_STEPS_PER_NODE = 10
GROUP_STEPS_MIN = 5000


# the bound is put on Torch-Pruning's Group class for the time of one analysis: one analysis at a time, so that
# threads (a threaded evaluator preparing tasks) never see each other's bound or restore the wrong method
_BOUND_LOCK = threading.Lock()


class _Unsettled(Exception):
    def __init__(self, group):
        super().__init__("unsettled")
        self.group = group


def _all_groups(graph: tp.DependencyGraph, ignored: list[nn.Module]) -> tuple[list, list]:
    """Torch-Pruning's ``get_all_groups`` with convolutions as roots, each group's analysis bounded.

    Returns (groups, unsettled): the Torch-Pruning groups, and (root module, steps, constructs seen) for each
    root whose analysis did not settle within the bound (its channels are then left whole)."""
    from torch_pruning.dependency.group import Group

    limit = max(GROUP_STEPS_MIN, GROUP_STEPS_PER_NODE * len(graph.module2node))
    ignored = [*ignored, *getattr(graph, "IGNORED_LAYERS_IN_TRACING", [])]
    add = Group.add_dep

    def bounded(self, dep, idxs):
        if len(self._group) >= limit:
            raise _Unsettled(self)
        add(self, dep, idxs)

    groups, unsettled, visited = [], [], set()
    with _BOUND_LOCK:
        Group.add_dep = bounded
        try:
            _bounded_groups(graph, ignored, limit, groups, unsettled, visited)
        finally:
            Group.add_dep = add
    return groups, unsettled


def _bounded_groups(graph: tp.DependencyGraph, ignored: list[nn.Module], limit: int, groups: list, unsettled: list,
                    visited: set) -> None:
    """``_all_groups``' loop, under the bound: fills ``groups``, ``unsettled`` and ``visited``."""
    with quiet_torch_pruning():
        for module in list(graph.module2node):
            if module in ignored or module in visited or not isinstance(module, CONV_TYPES):
                continue
            try:
                group = graph.get_pruning_group(module, tp.prune_conv_out_channels, list(range(module.out_channels)))
            except _Unsettled as exc:
                seen = [c for c in dict.fromkeys(_construct(i.dep.target.module) for i in exc.group.items) if c]
                unsettled.append((module, limit, seen))
                visited.add(module)
                continue
            prunable = True
            for dep, _ in group:  # as get_all_groups: a group with an ignored producer is not pruned
                if graph.is_out_channel_pruning_fn(dep.handler):
                    visited.add(dep.target.module)
                    prunable = prunable and dep.target.module not in ignored
            if prunable:
                groups.append(group)


def _trace_groups(model: nn.Module, example_input: torch.Tensor, ignored: list[nn.Module],
                  untracked: tuple[str, ...]) -> tuple[list[ChannelGroup], list[str]]:
    """(groups, parameters outside standard layers that the graph took for per-channel ones but are not)."""
    names = {m: n for n, m in model.named_modules()}
    modules = dict(model.named_modules())
    with buffers_as_parameters(model):
        param_names = {p: n for n, p in model.named_parameters()}
        graph = build_dependency_graph(model, example_input, untracked)
        tp_groups, unsettled = _all_groups(graph, ignored)
    groups: list[ChannelGroup] = []
    mismatched: list[str] = []
    for module, steps, constructs_seen in unsettled:
        name = names[module]
        groups.append(ChannelGroup(len(groups), name, module.out_channels, (Member(name, None),), (), (), None,
                                   tuple(constructs_seen),
                                   f"the dependency analysis of its channels did not settle after {steps} steps "
                                   f"(Torch-Pruning cycles, as ReXNet's partial residuals make it)", untracked))
    for tp_group in tp_groups:
        root_module = tp_group[0].dep.target.module
        size = len(tp_group[0].idxs)
        constructs: list[str] = []
        # (name, kind) -> its pairs: a layer may read the group at several offsets (DLA's Root conv reads
        # cat(x2, x1) where x1 and x2 are coupled by a residual add), so repeated touches are merged
        touched: dict[tuple[str, str], dict[tuple[int, int], None]] = {}
        for dep, idxs in tp_group:
            module = dep.target.module
            if isinstance(module, nn.Parameter):  # outside standard layers: Torch-Pruning shrinks it too
                node = graph.module2node.get(module)
                dim = getattr(node, "pruning_dim", None)
                if dim is not None and any(int(getattr(i, "idx", i)) >= module.shape[dim] for i in idxs):
                    mismatched.append(param_names[module])
                continue
            construct = _construct(module)
            if construct is not None and construct not in constructs:
                constructs.append(construct)
            name = names.get(module)
            if name is None:
                continue
            pairs = _pairs(idxs, size, expanded=isinstance(module, nn.Linear))
            touched.setdefault((name, _kind(graph, dep.handler)), {}).update(dict.fromkeys(pairs))
        touches = [(name, kind, tuple(pairs)) for (name, kind), pairs in touched.items()]
        members, consumers = [], []
        for name, kind, pairs in touches:
            module = modules[name]
            if kind == "out" and isinstance(module, PRODUCER_TYPES):
                members.append(Member(name, _single_bn_after(graph, module, names)))
            elif kind == "in" and isinstance(module, PRODUCER_TYPES):
                cols: list[list[int]] = [[] for _ in range(size)]
                for idx, root_idx in pairs:
                    if 0 <= root_idx < size:
                        cols[root_idx].append(idx)
                consumers.append(Consumer(name, tuple(tuple(c) for c in cols)))
        if not members:
            continue
        root = names[root_module]
        problem = _problem(touches, size, modules)
        ties = None
        if problem is None:
            try:
                ties = _ties(root, size, touches, modules)
            except ModelError as exc:
                problem = str(exc)
        groups.append(ChannelGroup(len(groups), root, size, tuple(members), tuple(consumers), tuple(touches), ties,
                                   tuple(constructs), problem, untracked))
    return groups, sorted(set(mismatched))
