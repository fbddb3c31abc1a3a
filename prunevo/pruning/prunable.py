"""The groups that prune as they mask: each one's physical removal checked against its keep-mask.

The dependency graph (``groups``) is Torch-Pruning's reading of the model; some constructs it follows
only partly -- channel slicing ``x[:, :k]``, ``chunk``/``split`` with sizes fixed in ``forward``, a
``view`` of the channel axis into (radix, C), PixelShuffle, a branch that runs only in training -- and
then the physically pruned network fails to run or computes something else.  Here every group is tried
before anything is scored: a few channels of each removed from a copy, the copy run and compared with the
masked network.
A group that fails is left whole (its layers keep their width, counted as fixed in the MACs target) and
named with the construct its channels pass through; the rest are pruned as usual.  One trial covers all
groups when they all pass, and a failing trial is bisected, so the cost is one or a few pruned copies.
"""
from __future__ import annotations

import contextlib
import copy
import logging
from dataclasses import dataclass, replace
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from prunevo.errors import ModelError
from prunevo.pruning.groups import STANDARD_LAYERS, ChannelGroup, find_groups
from prunevo.pruning.masks import apply_masks
from prunevo.pruning.physical import prune_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeftWhole:
    """A group that is not pruned: its root layer, its size and why (the construct, in the user's terms)."""

    root: str
    size: int
    layers: tuple[str, ...]  # the layers whose output channels the group couples
    reason: str

    def __str__(self) -> str:
        others = [n for n in self.layers if n != self.root]
        with_ = f", with {', '.join(map(repr, others[:3]))}{' ...' if len(others) > 3 else ''}" if others else ""
        return f"layer {self.root!r} ({self.size} channels{with_}): {self.reason}"


def prunable_groups(model: nn.Module, example_input: torch.Tensor, ignored: list[nn.Module] | None = None,
                    keep_layers: tuple[str, ...] = ()) -> tuple[list[ChannelGroup], list[LeftWhole]]:
    """The groups of ``model`` whose physical removal computes what their masks compute, and those left whole.

    Args:
        model: the network (not changed).
        example_input: one input, shape [1, C, H, W] (its shape is what matters).
        ignored, keep_layers: as ``groups.find_groups``.

    Returns:
        (groups, left whole): the prunable groups, re-indexed from 0, and one ``LeftWhole`` per group that
        is not pruned, in the graph's order.

    Raises:
        ModelError: the model cannot be traced, or no group can be pruned (naming the constructs found).
    """
    groups = find_groups(model, example_input, ignored, keep_layers)
    left = {g.index: g.problem for g in groups if g.problem is not None}
    trial = [g for g in groups if g.problem is None and g.size > 1]
    for group in _failing(model, example_input, trial):
        left[group.index] = "pruning it does not compute what masking it does"
    whole = [LeftWhole(g.root, g.size, tuple(m.layer for m in g.members), _reason(model, g, left[g.index]))
             for g in groups if g.index in left]
    kept = [replace(g, index=i) for i, g in enumerate(g for g in groups if g.index not in left)]
    if not kept:
        raise ModelError(f"no channel group of the model can be pruned: {'; '.join(map(str, whole[:3]))}"
                         f"{'; ...' if len(whole) > 3 else ''}; supported: convolutions, BatchNorm, residual adds, "
                         f"concatenations, depthwise and grouped convolutions, flatten before linear layers")
    for item in whole:
        log.info("left whole (not pruned): %s", item)
    if len(whole) == 1:
        log.warning("prunevo: note: left whole (not pruned): %s; to leave it whole without this trial, pass "
                    "--ignore-layers %s", whole[0], " ".join(whole[0].layers))
    elif whole:
        others = ", ".join(repr(w.root) for w in whole[1:4]) + (" ..." if len(whole) > 4 else "")
        log.warning("prunevo: note: %d channel groups are left whole (not pruned), first %s; the others: layer %s "
                    "('prunevo -v COMMAND' lists each; report.json too)", len(whole), whole[0], others)
    return kept, whole


def _reason(model: nn.Module, group: ChannelGroup, problem: str) -> str:
    """The construct that keeps ``group`` whole, as users write it, then what went wrong."""
    what = list(group.constructs) or _channel_tensors(model, group)
    return f"its channels pass through {' and '.join(what)}, and {problem}" if what else problem


def _channel_tensors(model: nn.Module, group: ChannelGroup) -> list[str]:
    """Buffers and parameters outside standard layers with a dimension of the group's size: what the channels
    meet, named when the graph shows no construct (such tensors usually shrink with their channels; one used
    in a way the graph does not see is the suspect)."""
    found = []
    for name, module in model.named_modules():
        if isinstance(module, STANDARD_LAYERS):
            continue
        tensors = [*module.named_buffers(prefix=name, recurse=False),
                   *module.named_parameters(prefix=name, recurse=False)]
        found += [f"the tensor {n!r} (shape {list(t.shape)}) outside standard layers" for n, t in tensors
                  if t.is_floating_point() and group.size in t.shape and n not in group.untracked]
    return found[:2]


def _trial_keep(group: ChannelGroup) -> torch.Tensor:
    """A keep-mask removing a few channels spread over the group (the first, the middle one and the last,
    per slice of a grouped convolution), so a shifted or re-split channel order shows."""
    positions = group.size if group.ties is None else max(group.ties) + 1
    drop = {0} if positions < 4 else {0, positions // 2, positions - 1}
    keep = torch.tensor([p not in drop for p in range(positions)])
    if bool(keep.all()) or not bool(keep.any()):
        keep = torch.ones(positions, dtype=torch.bool)
    return keep if group.ties is None else keep[torch.tensor(group.ties)]


STOCHASTIC = ("Dropout", "StochasticDepth", "DropPath", "DropBlock")  # random in training, drawn per width


def training_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in training mode (BatchNorm on batch statistics) with its random layers (dropout,
    stochastic depth) in eval mode, so that two copies compute the same."""
    model = copy.deepcopy(model).train()
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd) or any(k in type(m).__name__ for k in STOCHASTIC):
            m.eval()
    return model


_DROPOUT_FUNCTIONS = ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout")


@contextlib.contextmanager
def functional_dropout_off() -> Iterator[None]:
    """``torch.nn.functional``'s dropout functions return their input inside: a model calling them in
    ``forward`` (timm's heads: ``F.dropout(x, p=self.drop_rate, training=self.training)``) draws masks of a
    different shape once pruned, so its training-mode outputs could never be compared."""
    saved = {name: getattr(F, name) for name in _DROPOUT_FUNCTIONS if hasattr(F, name)}
    try:
        for name in saved:
            setattr(F, name, lambda x, *args, **kwargs: x)
        yield
    finally:
        for name, function in saved.items():
            setattr(F, name, function)


def _prunes_as_masked(model: nn.Module, example_input: torch.Tensor, groups: list[ChannelGroup]) -> bool:
    """Whether removing ``_trial_keep``'s channels of ``groups`` computes what masking them does, in eval and
    in training mode (a module may compute differently in each: GhostNet's).

    In float64 where the model runs in it: random weights and two images make deep nets chaotic in training
    mode (BatchNorm on 2 x 3 x 3 maps), and float32 rounding, which differs with the channel count, would
    read as a difference; in float32 for a model that makes float32 tensors of its own."""
    if not groups:
        return True
    keep = [_trial_keep(g) for g in groups]
    verdict = _compare(model, example_input, groups, keep, torch.float64)
    return _compare(model, example_input, groups, keep, torch.float32) if verdict is None else verdict


def _compare(model: nn.Module, example_input: torch.Tensor, groups: list[ChannelGroup], keep: list[torch.Tensor],
             dtype: torch.dtype) -> bool | None:
    """``_prunes_as_masked`` in ``dtype``; None when the masked model itself does not run in it."""
    x = torch.randn((2, *example_input.shape[1:]), generator=torch.Generator().manual_seed(0), dtype=dtype)
    with torch.no_grad():
        masked = copy.deepcopy(model).to(dtype).eval()
        apply_masks(masked, groups, keep)
        try:
            expected = masked(x)
        except Exception:  # noqa: BLE001  the model's own code fixes another type
            return None
        try:
            pruned = prune_model(copy.deepcopy(model).to(dtype).eval(), groups, keep, example_input.to(dtype))
            if not same_output(expected, pruned(x)):
                return False
            with functional_dropout_off():
                return same_output(training_copy(masked)(x), training_copy(pruned)(x))
        except Exception:  # noqa: BLE001  any failure of the pruned copy (a shape error in forward...) is a "no"
            return False


def same_output(expected, got) -> bool:
    """Whether ``got`` is ``expected`` up to float rounding: the one test of "the pruned network computes what
    the masked one does" (here and in the session's check of the final pruned model)."""
    if not isinstance(got, torch.Tensor) or not isinstance(expected, torch.Tensor) or got.shape != expected.shape:
        return False
    return bool(torch.allclose(got, expected, rtol=1e-3, atol=1e-3 * (1 + float(expected.abs().max()))))


def _failing(model: nn.Module, example_input: torch.Tensor, groups: list[ChannelGroup]) -> list[ChannelGroup]:
    """The groups whose removal breaks the model: all of them tried at once, a failing set bisected."""
    if _prunes_as_masked(model, example_input, groups):
        return []
    if len(groups) == 1:
        return groups
    half = len(groups) // 2
    failing = _failing(model, example_input, groups[:half]) + _failing(model, example_input, groups[half:])
    if not failing:  # each half prunes alone, both together do not: the later half goes whole
        return groups[half:]
    rest = [g for g in groups if g not in failing]
    return failing if _prunes_as_masked(model, example_input, rest) else failing + _failing(model, example_input, rest)
