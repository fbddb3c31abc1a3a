"""Torch-Pruning's own importance classes as named criteria (``tp-l1``, ``tp-l2``, ``tp-taylor``...).

These are what users of PyTorch channel pruning run today, so every report compares against them.  The
scores come from Torch-Pruning's classes themselves, called on the same dependency groups that prunevo
prunes (one ``tp.Group`` per ``ChannelGroup``, channels in the same root order); prunevo only supplies
what the classes expect to find on the model: the loss gradient for Taylor, and the per-sample squared
gradients for Hessian/OBD.  Allocation, selection and fine-tuning are prunevo's, as for every criterion,
so only the scores differ.

Each entry also says whether the formula grammar can express the criterion (see ``TorchPruningSpec``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch_pruning as tp
from torch import nn

from prunevo.pruning.calibration import Calibration
from prunevo.pruning.groups import build_dependency_graph
from prunevo.pruning.scores import NotApplicable

TAYLOR_CHUNK = 32  # calibration images per forward/backward pass when accumulating the batch gradient


@dataclass(frozen=True)
class TorchPruningSpec:
    """One Torch-Pruning importance and what the grammar can say about it.

    ``formula``: a grammar formula whose scores rank the channels of a group exactly as the class does,
    on the groups ``exact_on`` describes (None: the grammar cannot express it); ``missing``: what the
    grammar lacks to express it everywhere.  Torch-Pruning divides each group's scores by their mean
    (``normalizer='mean'``), which keeps the order inside a group; ``lnorm(formula)`` does the same for
    global allocation on groups with one producing layer.
    """

    name: str
    cls: str  # the Torch-Pruning class, as users know it
    make: Callable[[str, str | None], tp.importance.Importance]  # (group reduction, normalizer) -> importance
    gradients: str | None = None  # None, "batch" (mean loss gradient) or "per-sample" (mean squared gradient)
    normalizer: str = "mean"  # Torch-Pruning's default for the class
    formula: str | None = None
    exact_on: str = ""
    missing: str = ""


_ONE_LAYER = "groups with one producing layer whose consumers read whole channels (every group of plain nets)"
_RESIDUAL = ("in a residual group Torch-Pruning adds each coupled layer's term once, while prunevo applies the "
             "formula to every producing layer and then reduces, so the consumers' term counts once per "
             "producing layer: the grammar has no group-level term")

TP_CRITERIA: dict[str, TorchPruningSpec] = {spec.name: spec for spec in (
    TorchPruningSpec(
        "tp-l1", "GroupMagnitudeImportance(p=1)",
        lambda r, n: tp.importance.GroupMagnitudeImportance(p=1, group_reduction=r, normalizer=n),
        formula="l1(W) + l1(Wn) + abs(gamma)", exact_on=_ONE_LAYER, missing=_RESIDUAL),
    TorchPruningSpec(
        "tp-l2", "GroupMagnitudeImportance(p=2), Torch-Pruning's default",
        lambda r, n: tp.importance.GroupMagnitudeImportance(p=2, group_reduction=r, normalizer=n),
        formula="square(l2(W)) + square(l2(Wn)) + square(gamma)", exact_on=_ONE_LAYER, missing=_RESIDUAL),
    TorchPruningSpec(
        "tp-bn", "BNScaleImportance",
        lambda r, n: tp.importance.BNScaleImportance(group_reduction=r, normalizer=n),
        formula="abs(gamma)", exact_on="every group whose producing layers each have their own BatchNorm "
                                       "(the same ranking as the classic bn)",
        missing="nothing within a group; it does not apply to layers without BatchNorm"),
    TorchPruningSpec(
        "tp-taylor", "GroupTaylorImportance", lambda r, n: tp.importance.GroupTaylorImportance(group_reduction=r, normalizer=n),
        gradients="batch",
        missing="the loss gradient with respect to the weights: the class sums |w * dL/dw| over the channel's "
                "filter and its consumers' input slices, while the grammar's G is the gradient with respect to "
                "the feature map (the classic taylor, abs(mean(F * G)), is the activation form)"),
    TorchPruningSpec(
        "tp-hessian", "GroupHessianImportance (OBD)",
        lambda r, n: tp.importance.GroupHessianImportance(group_reduction=r, normalizer=n),
        gradients="per-sample",
        missing="per-sample squared weight gradients: the class sums w^2 * mean((dL/dw)^2), the diagonal "
                "Fisher approximation of the Hessian, over the channel's parameters"),
    TorchPruningSpec(
        "tp-lamp", "LAMPImportance", lambda r, n: tp.importance.LAMPImportance(p=2, group_reduction=r),
        normalizer="lamp", formula="square(l2(W)) + square(l2(Wn)) + square(gamma)",
        exact_on=_ONE_LAYER + "; LAMP keeps tp-l2's order inside a group, so under uniform allocation it "
                              "selects what tp-l2 selects",
        missing="a rank-based normalization for global allocation: LAMP divides each score by the sum of "
                "the scores in its group that are not smaller"),
    TorchPruningSpec(
        "tp-fpgm", "FPGMImportance", lambda r, n: tp.importance.FPGMImportance(p=2, group_reduction=r, normalizer=n),
        formula="fpgm(square(W)) + fpgm(square(Wn))",
        exact_on="groups with one producing layer and one consumer that reads whole channels without a "
                 "flatten (the class measures distances per consumer, and per flattened feature)",
        missing="distances per consumer: Wn joins all consumers' slices into one row; and " + _RESIDUAL),
)}


def _named_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _batch_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = TAYLOR_CHUNK) -> None:
    """``.grad`` = gradient of the mean cross-entropy over the batch, accumulated in chunks (bounded memory)."""
    for start in range(0, len(x), chunk):
        xb, yb = x[start:start + chunk], y[start:start + chunk]
        loss = nn.functional.cross_entropy(model(xb), yb, reduction="sum") / len(x)
        loss.backward()


def _mean_squared_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """``.grad`` = mean over samples of the squared per-sample gradient (the diagonal empirical Fisher).

    Torch-Pruning documents ``accumulate_grad`` for this, but in torch-pruning 1.6 it tests parameter
    *names* against a dict keyed by parameters, so it keeps only the last sample's gradient; the class
    itself reads ``.grad`` when nothing was accumulated, which is what this fills.
    """
    params = _named_weights(model)
    total = {n: torch.zeros_like(p) for n, p in params}
    for i in range(len(x)):  # one sample per pass: eval-mode outputs do not depend on batch companions
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        for n, p in params:
            if p.grad is not None:
                total[n] += p.grad.detach() ** 2
    for n, p in params:
        p.grad = total[n] / len(x)


def _check_gradients(model: nn.Module, layers: list[str]) -> None:
    modules = dict(model.named_modules())
    for name in layers:
        if modules[name].weight.grad is None:
            raise NotApplicable(f"needs the gradient of the loss, which does not reach layer {name!r}")


def tp_group_scores(calibration: Calibration, name: str, reduction: str = "mean",
                    normalizer: str | None = "default") -> list[torch.Tensor]:
    """Torch-Pruning's scores of every group of ``calibration`` (float64, CPU, channels in group order).

    ``normalizer``: ``"default"`` is the class's own (mean, or LAMP's); None gives the raw group scores.
    Raises ``NotApplicable`` when the class has no score for a group (no BatchNorm for ``tp-bn``) or the
    loss gradient does not reach a layer.
    """
    spec = TP_CRITERIA[name]
    importance = spec.make(reduction, spec.normalizer if normalizer == "default" else normalizer)
    with calibration.on_device() as (model, x, y):
        graph = calibration.memo("tp-graph", lambda: build_dependency_graph(model, x[:1]))
        modules = dict(model.named_modules())
        was_training = model.training
        model.eval()
        try:
            if spec.gradients is not None:
                model.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    if spec.gradients == "batch":
                        _batch_gradient(model, x, y, calibration.batch_size or TAYLOR_CHUNK)
                    else:
                        _mean_squared_gradient(model, x, y)
                _check_gradients(model, [m.layer for g in calibration.groups for m in g.members])
            scores = []
            for group in calibration.groups:
                tp_group = graph.get_pruning_group(modules[group.root], tp.prune_conv_out_channels,
                                                   list(range(group.size)))
                value = importance(tp_group)
                if value is None:
                    raise NotApplicable(f"Torch-Pruning's {spec.cls} has no score for the group of layer "
                                        f"{group.root!r}" + (" (it has no BatchNorm)" if name == "tp-bn" else ""))
                scores.append(value.detach().to("cpu", torch.float64))
            return scores
        finally:
            if spec.gradients is not None:
                model.zero_grad(set_to_none=True)
            model.train(was_training)
