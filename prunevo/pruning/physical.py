"""Physical removal of the channels a selection drops, with Torch-Pruning."""
from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from prunevo.errors import ModelError, first_line
from prunevo.pruning.groups import (
    CONV_TYPES,
    ChannelGroup,
    buffers_as_parameters,
    build_dependency_graph,
    quiet_torch_pruning,
)


def prune_model(model: nn.Module, groups: list[ChannelGroup], keep: list[torch.Tensor],
                example_input: torch.Tensor) -> nn.Module:
    """Remove (in place) every channel whose keep-mask is False; returns ``model`` for chaining.  Per-channel
    buffers outside standard layers shrink with their channels (``groups.buffers_as_parameters``)."""
    modules = dict(model.named_modules())
    with buffers_as_parameters(model):
        graph = build_dependency_graph(model, example_input, groups[0].untracked if groups else ())
        for group, mask in zip(groups, keep):
            removed = torch.nonzero(~mask).flatten().tolist()
            if not removed:
                continue
            root = modules[group.root]
            if not isinstance(root, CONV_TYPES):
                raise ModelError(f"group root {group.root} is a {type(root).__name__}, expected a convolution")
            try:
                with quiet_torch_pruning():
                    graph.get_pruning_group(root, tp.prune_conv_out_channels, idxs=removed).prune()
            except Exception as exc:  # Torch-Pruning's errors come in many types: one line naming the group
                raise ModelError(f"removing channels of the group of layer {group.root!r} failed "
                                 f"({type(exc).__name__}: {first_line(exc)})") from None
    return model
