"""Physical removal of the channels a selection drops, with Torch-Pruning."""
from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from prunevo.errors import ModelError
from prunevo.pruning.groups import ChannelGroup, build_dependency_graph


def prune_model(model: nn.Module, groups: list[ChannelGroup], keep: list[torch.Tensor],
                example_input: torch.Tensor) -> nn.Module:
    """Remove (in place) every channel whose keep-mask is False; returns ``model`` for chaining."""
    modules = dict(model.named_modules())
    graph = build_dependency_graph(model, example_input)
    for group, mask in zip(groups, keep):
        removed = torch.nonzero(~mask).flatten().tolist()
        if not removed:
            continue
        root = modules[group.root]
        if not isinstance(root, nn.Conv2d):
            raise ModelError(f"group root {group.root} is a {type(root).__name__}, expected Conv2d")
        tp_group = graph.get_pruning_group(root, tp.prune_conv_out_channels, idxs=removed)
        tp_group.prune()
    return model
