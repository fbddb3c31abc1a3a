"""Torch-Pruning's own importance classes as named criteria (``tp-l1``, ``tp-l2``, ``tp-taylor``...).

These are what users of PyTorch channel pruning run today, so every report compares against them.  The
scores come from Torch-Pruning's classes themselves, called on the same dependency groups that prunevo
prunes (one ``tp.Group`` per ``ChannelGroup``, channels in the same root order); prunevo only supplies
what the classes expect to find on the model: the loss gradient for Taylor, the per-sample squared
gradients for Hessian/OBD, the hooked forward and backward passes of OBDC (EigenDamage), and the input
activations of Activation.  Allocation, selection and fine-tuning are prunevo's, as for every criterion,
so only the scores differ.

Each entry also says whether the formula grammar can express the criterion (see ``TorchPruningSpec``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from types import SimpleNamespace
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
    # what the class reads besides weights: None, "batch" (the mean loss gradient), "per-sample" (the mean
    # squared per-sample gradient), "obdc" (its own hooks on forward and backward passes) or "activation"
    # (its own hooks on forward passes)
    gradients: str | None = None
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
        "tp-taylor", "GroupTaylorImportance",
        lambda r, n: tp.importance.GroupTaylorImportance(group_reduction=r, normalizer=n),
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
    TorchPruningSpec(
        "tp-obdc", "OBDCImportance (EigenDamage, Wang et al. 2019)",
        lambda r, n: _OBDCImportance(group_reduction=r, normalizer=n), gradients="obdc",
        missing="per-sample weight gradients: the class sums w^2 * sum over samples of (dL_i/dw)^2 (the diagonal "
                "empirical Fisher, from each layer's inputs and output gradients) over the channel's filter"),
    TorchPruningSpec(
        "tp-activation", "ActivationImportance",
        lambda r, n: tp.importance.ActivationImportance(group_reduction=r, normalizer=n), gradients="activation",
        formula="mean(F)",
        exact_on="groups with one producing layer whose consumers are convolutions reading its BatchNorm-ReLU "
                 "output directly (the classic activation: the class averages |input| of each consumer over "
                 "samples and positions)",
        missing="the consumers' inputs: after pooling, a residual add or a flatten into a linear layer, a "
                "consumer reads another tensor than the producing layer's F"),
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


class _OBDCImportance(tp.importance.OBDCImportance):
    """Torch-Pruning 1.6's OBDCImportance, with one fix: for a layer with a bias, its per-sample gradient
    matrix has a bias column that the weights lack, so scoring failed with a shape mismatch on every net
    with conv biases (LeNet-5).  ``bias=False`` (the default) means the bias is not scored: drop its column."""

    def step(self):
        with torch.no_grad():
            for m in self.modules:
                grad_mat = self.MatGradHandler(self.A[m], self.DS[m], m)
                if m.bias is not None:
                    grad_mat = grad_mat[..., :-1]
                grad_mat *= self.DS[m].size(0)  # the gradient of the mean loss, back to each sample's own
                if self.steps == 0:
                    self.Fisher[m] = grad_mat.new_zeros(grad_mat.size()[1:])
                self.Fisher[m] += grad_mat.pow(2).sum(0)
                self.A[m] = self.DS[m] = None
        self.steps += 1


def _obdc_fisher(importance, model: nn.Module, graph, x: torch.Tensor, y: torch.Tensor, chunk: int) -> None:
    """OBDCImportance's own recipe: hook the model (``_prepare_model``), then per batch a backward pass of the
    mean loss and ``step()``, which adds each sample's squared weight gradient to its Fisher diagonal."""
    # _prepare_model reads the groups from a pruner: these are the attributes it uses
    pruner = SimpleNamespace(DG=graph, ignored_layers=[], root_module_types=[nn.Conv2d, nn.Linear],
                             _downstream_node_as_root_if_attention=lambda group: group)
    importance._prepare_model(model, pruner)
    try:
        with warnings.catch_warnings():  # the class registers non-full backward hooks, which torch deprecates
            warnings.simplefilter("ignore")
            for start in range(0, len(x), chunk):
                model.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(model(x[start:start + chunk]), y[start:start + chunk]).backward()
                importance.step()
    finally:
        importance._rm_hooks(model)


def _input_activations(importance, model: nn.Module, x: torch.Tensor, chunk: int) -> None:
    """ActivationImportance's hooks keep the mean |input| (conv) or summed |input| (linear) of the *last*
    forward pass; this feeds the calibration batch in chunks and leaves on every layer the value one pass over
    the whole batch would have left (means weighted by chunk size, sums added)."""
    totals: dict[nn.Module, torch.Tensor] = {}
    with torch.no_grad(), importance.compute_importance(model):
        for start in range(0, len(x), chunk):
            xb = x[start:start + chunk]
            model(xb)
            for m in model.modules():
                if hasattr(m, "_importance"):
                    part = m._importance * (len(xb) / len(x) if isinstance(m, nn.Conv2d) else 1.0)
                    totals[m] = totals[m] + part if m in totals else part
    for m, value in totals.items():
        m._importance = value


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
    if spec.gradients == "obdc":
        importance.num_classes = calibration.num_classes  # the class leaves out the classifier by its width
    chunk = calibration.batch_size or TAYLOR_CHUNK
    with calibration.on_device() as (model, x, y):
        graph = calibration.memo("tp-graph", lambda: build_dependency_graph(model, x[:1]))
        modules = dict(model.named_modules())
        was_training = model.training
        model.eval()
        try:
            if spec.gradients == "activation":
                _input_activations(importance, model, x, chunk)
            elif spec.gradients is not None:
                model.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    if spec.gradients == "batch":
                        _batch_gradient(model, x, y, chunk)
                    elif spec.gradients == "obdc":
                        _obdc_fisher(importance, model, graph, x, y, chunk)
                    else:
                        _mean_squared_gradient(model, x, y)
                _check_gradients(model, [m.layer for g in calibration.groups for m in g.members])
            scores = []
            for group in calibration.groups:
                tp_group = graph.get_pruning_group(modules[group.root], tp.prune_conv_out_channels,
                                                   list(range(group.size)))
                try:
                    value = importance(tp_group)
                except KeyError as exc:  # OBDC keeps a Fisher only for the layers its hooks could read
                    names = {m: n for n, m in modules.items()}
                    raise NotApplicable(f"Torch-Pruning's {spec.cls} has no Fisher information for layer "
                                        f"{names.get(exc.args[0], exc.args[0])!r} in the group of {group.root!r} "
                                        f"(its per-sample gradients do not support grouped or depthwise "
                                        f"convolutions)") from None
                if value is None:
                    raise NotApplicable(f"Torch-Pruning's {spec.cls} has no score for the group of layer "
                                        f"{group.root!r}" + (" (it has no BatchNorm)" if name == "tp-bn" else ""))
                scores.append(value.detach().to("cpu", torch.float64))
            return scores
        finally:
            if spec.gradients is not None:
                model.zero_grad(set_to_none=True)
            for m in model.modules():  # what the activation hooks left behind
                if hasattr(m, "_importance"):
                    del m._importance
            model.train(was_training)
