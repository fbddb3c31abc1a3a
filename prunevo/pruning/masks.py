"""Keep-masks applied in place: a masked network computes what the physically pruned one computes.

Masking zeroes every parameter that physical removal would delete (producer filters and biases,
BatchNorm scale and shift, consumer input weights), so a removed channel is exactly zero everywhere and
contributes nothing downstream.  ``reapply`` after each optimizer step keeps it so during fine-tuning.
"""
from __future__ import annotations

import torch
from torch import nn

from prunevo.pruning.groups import CONV_TYPES, PRODUCER_TYPES, ChannelGroup


class MaskSet:
    """Parameter masks for one selection on one network (by module name, so reusable on copies)."""

    def __init__(self, model: nn.Module, groups: list[ChannelGroup], keep: list[torch.Tensor]):
        modules = dict(model.named_modules())
        self.zeroed: list[tuple[str, str, torch.Tensor, int]] = []  # (module, param, indices, dim)
        for group, mask in zip(groups, keep):
            removed_root = set(torch.nonzero(~mask).flatten().tolist())
            if not removed_root:
                continue
            for name, kind, pairs in group.touches:
                idx = torch.tensor(sorted({i for i, r in pairs if r in removed_root}), dtype=torch.long)
                module = modules[name]
                if kind == "out" and isinstance(module, (*PRODUCER_TYPES, nn.modules.batchnorm._BatchNorm)):
                    self.zeroed.append((name, "weight", idx, 0))
                    if getattr(module, "bias", None) is not None:
                        self.zeroed.append((name, "bias", idx, 0))
                elif kind == "in" and isinstance(module, PRODUCER_TYPES):
                    if isinstance(module, CONV_TYPES) and module.groups > 1:
                        continue  # depthwise: its input channel is its output channel, masked as "out"
                    self.zeroed.append((name, "weight", idx, 1))

    @torch.no_grad()
    def reapply(self, model: nn.Module) -> None:
        modules = dict(model.named_modules())
        for name, param, idx, dim in self.zeroed:
            getattr(modules[name], param).index_fill_(dim, idx, 0.0)


def apply_masks(model: nn.Module, groups: list[ChannelGroup], keep: list[torch.Tensor]) -> MaskSet:
    masks = MaskSet(model, groups, keep)
    masks.reapply(model)
    return masks


def masked_states(model: nn.Module, base_state: dict[str, torch.Tensor], groups: list[ChannelGroup],
                  keeps: list[list[torch.Tensor]]
                  ) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    """Candidates of different pruned widths on the unpruned shape: each one's base state with its removed
    channels zeroed, and the 0/1 multipliers that keep them zero through fine-tuning (``pruning.masks``)."""
    states, masks = [], []
    for keep in keeps:
        mask: dict[str, torch.Tensor] = {}
        for module, param, idx, dim in MaskSet(model, groups, keep).zeroed:
            key = f"{module}.{param}"
            mask.setdefault(key, torch.ones_like(base_state[key])).index_fill_(dim, idx, 0.0)
        states.append({k: v * mask[k] if k in mask else v for k, v in base_state.items()})  # unmasked: shared
        masks.append(mask)
    keys = sorted({k for m in masks for k in m})  # one key set for every candidate, so that masks stack
    masks = [{k: m.get(k, torch.ones_like(base_state[k])) for k in keys} for m in masks]
    return states, masks
