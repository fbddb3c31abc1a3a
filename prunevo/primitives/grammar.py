"""The design space: every operand and operator a pruning formula may use, with its type and meaning.

A formula maps the statistics of one prunable layer (see ``operands.LayerStats``) to one score per output
channel.  Values flow through five types, each a tensor whose first axis is the output channel ``c``:

* ``Weights``   ``[C, D]``     a channel's filter ``W`` or the next layer's weights that read it ``Wn``
* ``Maps``      ``[C, N, S]``  a channel's feature map ``F`` or its gradient ``G`` (N samples, S positions)
* ``MeanMaps``  ``[C, S]``     a feature map averaged over the samples (``nmean``): the channel's mean map
* ``ByClass``   ``[C, K]``     one value per class: ``cmean``/``cvar`` of a feature map over the samples of
  class k, ``rmean``/``rvar`` over the samples of every *other* class (the seed paper's P and Q statistics)
* ``Scores``    ``[C]``        one value per channel: reductions, BatchNorm ``gamma``/``beta``, constants

Class statistics combine with ``+ - * /`` among themselves and with scores (a score is the same for every
class of its channel), so a formula can weigh one class against the rest before reducing over classes, as
the seed paper's evolved function does (``GECCO22_TEXT`` in ``classic``).

Operators are overloaded by type (``abs`` exists for all four); the pair (name, argument types) is an
``Op``.  The table below is the single source of truth: the DEAP primitive set, the parser, the SymPy
and LaTeX exports and the evaluator are all derived from it.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import torch

EPS = 1e-6  # protects div/lnorm; "≈ 0" threshold of sparsity


class Weights:
    """[C, D]: one filter (or one slice of the next layer's weights) per channel."""


class Maps:
    """[C, N, S]: one feature map (or its gradient) per channel and calibration sample."""


class MeanMaps:
    """[C, S]: a feature map averaged over the calibration samples, one mean map per channel."""


class ByClass:
    """[C, K]: one class-conditional statistic per channel and class."""


class Scores:
    """[C]: one value per channel. Every formula returns this type."""


TYPES = (Weights, Maps, MeanMaps, ByClass, Scores)
TYPE_WORDS = {Weights: "weights", Maps: "feature maps", MeanMaps: "mean feature maps", ByClass: "class statistics",
              Scores: "scores"}

# Operands: text name -> type.  Constants are Scores too (broadcast over channels).
OPERANDS: dict[str, type] = {
    "W": Weights,
    "Wn": Weights,
    "F": Maps,
    "G": Maps,
    "gamma": Scores,
    "beta": Scores,
    # the MACs one channel of the layer costs (what removing it saves, at full width), divided by the mean over
    # the network's groups: the same for every channel of a layer, it lets a formula weigh importance against
    # cost, which decides the widths under global allocation with a MACs target (as latency-aware pruning does)
    "macs": Scores,
}

# Ephemeral constants are drawn from a short list: few distinct values keep SymPy canonical forms stable.
CONSTANT_CHOICES = (0.05, 0.1, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class Op:
    """One typed operator: ``name(args...) -> ret``, computed by ``fn`` on torch tensors."""

    name: str
    args: tuple[type, ...]
    ret: type
    fn: Callable[..., torch.Tensor]
    needs_labels: bool = False

    @property
    def key(self) -> str:
        """Unique primitive name inside the DEAP primitive set (names are overloaded across types)."""
        return self.name + "__" + "_".join(t.__name__ for t in self.args)


# --- implementations --------------------------------------------------------------------------------
def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def _sparsity(x: torch.Tensor) -> torch.Tensor:
    return (_rows(x).abs() <= EPS).to(x.dtype).mean(1)


def _fpgm(x: torch.Tensor) -> torch.Tensor:
    # FPGM: a filter close to all others (the geometric median) is redundant, so the score is its
    # summed distance to the other rows of the layer.
    rows = _rows(x)
    return torch.cdist(rows.unsqueeze(0), rows.unsqueeze(0)).squeeze(0).sum(1)


def _protected_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    safe = torch.where(b.abs() < EPS, torch.where(b < 0, -EPS, EPS) * torch.ones_like(b), b)
    return a / safe


def _lnorm(x: torch.Tensor) -> torch.Tensor:
    # Divide by the layer's mean |score| so that scores of different layers are comparable (global ranking).
    return x / (x.abs().mean() + EPS)


# Layer normalizations: under global allocation one ranking spans every layer, so how a layer's scores are
# scaled decides how many of its channels go (its width).  Each maps a layer's scores to a scale shared by
# all layers; within a layer they keep the order (uniform allocation selects the same channels).
def _lminmax(x: torch.Tensor) -> torch.Tensor:
    # Pruner-Zero's min-max normalization (Dong et al., ICML 2024; Torch-Pruning's "standarization"): the layer's
    # scores spread over [0, 1]
    low = x.amin()
    return (x - low) / (x.amax() - low + EPS)


def _lzscore(x: torch.Tensor) -> torch.Tensor:
    # the layer's scores in (sample) standard deviations from their mean (Torch-Pruning's "gaussian")
    return (x - x.mean()) / (x.std(unbiased=x.numel() > 1) + EPS)


def _lamp(x: torch.Tensor) -> torch.Tensor:
    # LAMP (Lee et al., ICLR 2021; Torch-Pruning's LAMPImportance normalizer): a channel's |score| divided by
    # the sum of the |scores| not below it in its layer, so each layer's largest score is 1 and every layer keeps
    # its best channels; ties are ordered by channel index (stable), the same in every process
    a = x.abs()
    order = torch.argsort(a, stable=True)
    tail = a[order].flip(0).cumsum(0).flip(0)  # sum of the sorted scores from each position to the top
    out = torch.empty_like(a)
    out[order] = a[order] / (tail + EPS)
    return out


def class_moments(sums: torch.Tensor, squares: torch.Tensor, counts: torch.Tensor,
                  rest: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance ([C, K] each) over all positions of the samples of each class k (``rest``: of every
    other class), from the per-class sums of each sample's mean and mean square ([C, K]) and the class counts
    ([K]).  The one place both the whole-tensor operators and the streamed accumulators compute them."""
    if rest:
        sums, squares, counts = (sums.sum(1, keepdim=True) - sums, squares.sum(1, keepdim=True) - squares,
                                 counts.sum() - counts)
    mean = sums / counts.clamp_min(1.0)
    var = (squares / counts.clamp_min(1.0) - mean * mean).clamp_min(0.0)
    return mean, var


def _class_sums(x: torch.Tensor, labels_onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return x.mean(2) @ labels_onehot, (x * x).mean(2) @ labels_onehot, labels_onehot.sum(0)


def _class_stat(index: int, rest: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda x, labels_onehot: class_moments(*_class_sums(x, labels_onehot), rest=rest)[index]


def _per_channel(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], scores_first: bool) -> Callable:
    """``fn`` of class statistics [C, K] and scores [C]: a channel's score applies to each of its classes."""
    if scores_first:
        return lambda a, b: fn(a[:, None], b)
    return lambda a, b: fn(a, b[:, None])


_REDUCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean": lambda x: _rows(x).mean(1),
    "std": lambda x: _rows(x).std(1, unbiased=False),
    "var": lambda x: _rows(x).var(1, unbiased=False),
    "l1": lambda x: _rows(x).abs().sum(1),
    "l2": lambda x: _rows(x).norm(dim=1),
    "max": lambda x: _rows(x).amax(1),
    "min": lambda x: _rows(x).amin(1),
    "sparsity": _sparsity,
    "fpgm": _fpgm,
}

_SCORE_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "neg": torch.neg,
    "abs": torch.abs,
    "sqrt": lambda x: torch.sqrt(x.abs()),
    "log1p": lambda x: torch.log1p(x.abs()),
    "square": torch.square,
    "lnorm": _lnorm,
    "lminmax": _lminmax,
    "lzscore": _lzscore,
    "lamp": _lamp,
}
# score operators computed over the whole layer (not channel by channel): SymPy keeps them opaque
LAYER_NORMS = ("lnorm", "lminmax", "lzscore", "lamp")

_SCORE_BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": _protected_div,
}


def _build_ops() -> tuple[Op, ...]:
    ops: list[Op] = []
    for tensor_type in (Weights, Maps, MeanMaps, ByClass):
        ops.append(Op("abs", (tensor_type,), tensor_type, torch.abs))
        ops.append(Op("square", (tensor_type,), tensor_type, torch.square))
        for name, fn in _REDUCTIONS.items():
            ops.append(Op(name, (tensor_type,), Scores, fn))
    ops.append(Op("mul", (Maps, Maps), Maps, torch.mul))
    ops.append(Op("smean", (Maps,), Maps, lambda x: x.mean(2, keepdim=True)))  # over positions, per sample
    ops.append(Op("nmean", (Maps,), MeanMaps, lambda x: x.mean(1)))  # over samples, per position
    ops.append(Op("cmean", (Maps,), ByClass, _class_stat(0, rest=False), needs_labels=True))
    ops.append(Op("cvar", (Maps,), ByClass, _class_stat(1, rest=False), needs_labels=True))
    ops.append(Op("rmean", (Maps,), ByClass, _class_stat(0, rest=True), needs_labels=True))
    ops.append(Op("rvar", (Maps,), ByClass, _class_stat(1, rest=True), needs_labels=True))
    for name, fn in _SCORE_UNARY.items():
        ops.append(Op(name, (Scores,), Scores, fn))
    for name, fn in _SCORE_BINARY.items():
        ops.append(Op(name, (Scores, Scores), Scores, fn))
        ops.append(Op(name, (ByClass, ByClass), ByClass, fn))
        ops.append(Op(name, (ByClass, Scores), ByClass, _per_channel(fn, scores_first=False)))
        ops.append(Op(name, (Scores, ByClass), ByClass, _per_channel(fn, scores_first=True)))
    return tuple(ops)


OPS: tuple[Op, ...] = _build_ops()
OPS_BY_KEY: dict[str, Op] = {op.key: op for op in OPS}
FUNCTION_NAMES: tuple[str, ...] = tuple(dict.fromkeys(op.name for op in OPS))


def resolve(name: str, arg_types: tuple[type, ...]) -> Op | None:
    """The overload of ``name`` that accepts ``arg_types``, or None."""
    return OPS_BY_KEY.get(Op(name, arg_types, Scores, torch.abs).key)


def signatures(name: str) -> list[str]:
    """Human-readable overloads of ``name``, for error messages."""
    return [
        f"{op.name}({', '.join(TYPE_WORDS[t] for t in op.args)}) -> {TYPE_WORDS[op.ret]}"
        for op in OPS
        if op.name == name
    ]


# --- random generation ------------------------------------------------------------------------------
def _min_heights() -> dict[type, int]:
    """Smallest subtree height that yields each type; lets generation always close a branch."""
    heights = {t: 0 for t in set(OPERANDS.values()) | {Scores}}
    changed = True
    while changed:
        changed = False
        for op in OPS:
            if all(a in heights for a in op.args):
                h = 1 + max(heights[a] for a in op.args)
                if h < heights.get(op.ret, 10**9):
                    heights[op.ret] = h
                    changed = True
    return heights


MIN_HEIGHT: dict[type, int] = _min_heights()


def terminals_of(type_: type) -> list[str]:
    names = [n for n, t in OPERANDS.items() if t is type_]
    return names + (["<const>"] if type_ is Scores else [])


def ops_returning(type_: type) -> list[Op]:
    return [op for op in OPS if op.ret is type_]


@dataclass(frozen=True)
class GenNode:
    """A prefix-order token produced by ``generate``: an operator, an operand, or a constant."""

    op: Op | None = None
    operand: str | None = None
    value: float | None = None


def generate(rng: random.Random, min_height: int, max_height: int, grow: bool,
             ret: type = Scores) -> list[GenNode]:
    """A random well-typed tree in prefix order (full or grow method).

    Unlike ``deap.gp.generate`` this never fails for a type without terminals (``ByClass``): such a
    branch is closed by the shortest operator chain that reaches terminals.
    """
    height = rng.randint(min_height, max_height)
    out: list[GenNode] = []
    stack = [(0, ret)]
    n_terms_total = sum(len(terminals_of(t)) for t in TYPES)
    n_ops_total = len(OPS)
    while stack:
        depth, type_ = stack.pop()
        terms = terminals_of(type_)
        at_leaf = depth >= height or (
            grow and depth >= min_height and rng.random() < n_terms_total / (n_terms_total + n_ops_total)
        )
        if at_leaf and terms:
            name = rng.choice(terms)
            if name == "<const>":
                out.append(GenNode(value=rng.choice(CONSTANT_CHOICES)))
            else:
                out.append(GenNode(operand=name))
            continue
        candidates = ops_returning(type_)
        if at_leaf:  # no terminal of this type: take the operators that close the branch fastest
            best = min(1 + max(MIN_HEIGHT[a] for a in op.args) for op in candidates)
            candidates = [op for op in candidates if 1 + max(MIN_HEIGHT[a] for a in op.args) == best]
        op = rng.choice(candidates)
        out.append(GenNode(op=op))
        for arg in reversed(op.args):
            stack.append((depth + 1, arg))
    return out
