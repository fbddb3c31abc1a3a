"""Pruned weights by indexing: one physically pruned *skeleton* per kept-width signature, and each
candidate's weights gathered from the base state, with no dependency graph per candidate.

Under uniform allocation every criterion keeps the same number of channels per group, so the pruned nets
of a whole population share one shape; only which channels survive differs.  Physical removal keeps the
surviving indices in their original order, so a candidate's pruned tensor is the base tensor indexed,
along each pruned dimension, by the indices its keep-masks leave.  ``Skeleton.build`` checks that claim
on the candidate it was built from (every tensor equal to Torch-Pruning's result) and refuses layers it
cannot reproduce, so callers fall back to physical pruning instead of computing on wrong weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from prunevo.pruning.groups import CONV_TYPES, PRODUCER_TYPES, ChannelGroup
from prunevo.pruning.physical import prune_model
from prunevo.utils import load_state

_BN = nn.modules.batchnorm._BatchNorm
_OUT_TENSORS = ("weight", "bias", "running_mean", "running_var")


class GatherUnsupported(Exception):
    """The skeleton cannot reproduce physical pruning on this model (use ``prune_model`` per candidate)."""


def signature(keep: list[torch.Tensor]) -> tuple[int, ...]:
    """Kept channels per group: candidates with equal signatures have pruned nets of one shape."""
    return tuple(int(mask.sum()) for mask in keep)


def _dims(module: nn.Module, kind: str) -> list[tuple[str, int]]:
    """(tensor name, dimension) that a group's channels index in ``module`` for a touch of this kind."""
    if kind == "out" and isinstance(module, PRODUCER_TYPES):
        return [("weight", 0), ("bias", 0)]
    if kind == "out" and isinstance(module, _BN):
        return [(name, 0) for name in _OUT_TENSORS]
    if kind == "in" and isinstance(module, nn.Linear):
        return [("weight", 1)]
    if kind == "in" and isinstance(module, CONV_TYPES):
        return [] if module.groups > 1 else [("weight", 1)]  # depthwise: pruned through its output channels
    if kind == "in" and isinstance(module, _BN):
        return []  # Torch-Pruning's BN handler is the same for in and out: counted once as "out"
    if any(True for _ in module.parameters(recurse=False)):
        raise GatherUnsupported(f"{type(module).__name__} layers are not gathered")
    return []


@dataclass
class _Index:
    """One pruned dimension of one tensor: the base size and, per group, (positions, group channels)."""

    size: int
    touches: list[tuple[int, torch.Tensor, torch.Tensor]]  # (group index, positions in this dim, channels)

    def kept(self, keep: list[torch.Tensor]) -> torch.Tensor:
        alive = torch.ones(self.size, dtype=torch.bool)
        for group, positions, channels in self.touches:
            alive[positions] &= keep[group][channels]
        return torch.nonzero(alive).flatten()


class Skeleton:
    """A pruned net of one signature, and the indexing that turns any candidate's keep-masks of that
    signature into its pruned state dict."""

    def __init__(self, model: nn.Module, sig: tuple[int, ...], plan: dict[str, list[tuple[int, _Index]]]):
        self.model = model
        self.signature = sig
        self._plan = plan

    @classmethod
    def build(cls, factory: Callable[[], nn.Module], base_state: dict[str, torch.Tensor],
              groups: list[ChannelGroup], keep: list[torch.Tensor], example_input: torch.Tensor) -> "Skeleton":
        """Prune a fresh net with ``keep`` physically and verify that gathering reproduces it exactly."""
        model = factory()
        load_state(model, base_state)
        modules = dict(model.named_modules())
        plan: dict[str, dict[int, _Index]] = {}
        for group in groups:
            for name, kind, pairs in group.touches:
                if not pairs:
                    continue
                positions = torch.tensor([p for p, _ in pairs], dtype=torch.long)
                channels = torch.tensor([c for _, c in pairs], dtype=torch.long)
                for tensor, dim in _dims(modules[name], kind):
                    key = f"{name}.{tensor}" if name else tensor
                    if key not in base_state:
                        continue  # e.g. a convolution without bias
                    index = plan.setdefault(key, {}).setdefault(dim, _Index(base_state[key].shape[dim], []))
                    index.touches.append((group.index, positions, channels))
        prune_model(model, groups, keep, example_input)
        skeleton = cls(model, signature(keep), {k: sorted(v.items()) for k, v in plan.items()})
        pruned = model.state_dict()
        gathered = skeleton.state_for(keep, base_state)
        if pruned.keys() != gathered.keys() or any(
                pruned[k].shape != gathered[k].shape or not torch.equal(pruned[k], gathered[k]) for k in pruned):
            raise GatherUnsupported("gathered weights differ from physical pruning")
        return skeleton

    def state_for(self, keep: list[torch.Tensor], base_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The pruned state dict of the candidate ``keep`` (same signature as the skeleton); tensors no group
        touches are shared with ``base_state``, read-only."""
        if signature(keep) != self.signature:
            raise ValueError(f"keep-masks of signature {signature(keep)} do not fit a skeleton of {self.signature}")
        out, kept = {}, {}
        for key, tensor in base_state.items():
            for dim, index in self._plan.get(key, ()):
                # a layer's weight, bias and BatchNorm tensors share their touches: one index for all of them
                touch = tuple((g, id(positions)) for g, positions, _ in index.touches)
                if touch not in kept:
                    kept[touch] = index.kept(keep)
                tensor = tensor.index_select(dim, kept[touch])
            out[key] = tensor  # untouched tensors are the base's own: callers copy (load_state_dict, stack)
        return out


class SkeletonCache:
    """Skeletons of one task by signature; remembers signatures whose gathering is unsupported."""

    def __init__(self, factory: Callable[[], nn.Module], base_state: dict[str, torch.Tensor],
                 groups: list[ChannelGroup], example_input: torch.Tensor):
        self.factory, self.base_state, self.groups, self.example_input = factory, base_state, groups, example_input
        self._skeletons: dict[tuple[int, ...], Skeleton | None] = {}

    def get(self, keep: list[torch.Tensor]) -> Skeleton | None:
        """The skeleton for ``keep``'s signature (built from ``keep`` on first use); None when unsupported."""
        sig = signature(keep)
        if sig not in self._skeletons:
            try:
                self._skeletons[sig] = Skeleton.build(self.factory, self.base_state, self.groups, keep,
                                                      self.example_input)
            except GatherUnsupported:
                self._skeletons[sig] = None
        return self._skeletons[sig]
