"""The design space: every operand and operator a pruning formula may use, with its type and meaning.

A formula maps the statistics of one prunable layer (see ``operands.LayerStats``) to one score per output
channel.  Values flow through five types (``registry``), each a tensor whose first axis is the output channel
``c``:

* ``Weights``   ``[C, D]``     a channel's filter ``W`` or the next layer's weights that read it ``Wn``
* ``Maps``      ``[C, N, S]``  a channel's feature map ``F`` or its gradient ``G`` (N samples, S positions)
* ``MeanMaps``  ``[C, S]``     a feature map averaged over the samples (``nmean``): the channel's mean map
* ``ByClass``   ``[C, K]``     one value per class: ``cmean``/``cvar`` of a feature map over the samples of
  class k, ``rmean``/``rvar`` over the samples of every *other* class (the seed paper's P and Q statistics)
* ``Scores``    ``[C]``        one value per channel: reductions, BatchNorm ``gamma``/``beta``, constants

Class statistics combine with ``+ - * /`` among themselves and with scores (a score is the same for every
class of its channel), so a formula can weigh one class against the rest before reducing over classes, as
the seed paper's evolved function does (``GECCO22_TEXT`` in ``classic``).

Operators are overloaded by type (``abs`` exists for all four); the pair (name, argument types) is an ``Op``.
This module registers prunevo's own operands and operators, each with every back-end in one call
(``registry.register_operand``, ``registry.register_operator``): that is the single source of truth the DEAP
primitive set, the parser, the evaluator, the streamed accumulators and the exports read.  The overloads are
added in the order of prunevo's first releases, which the primitive set and random generation follow, so a
seed still reproduces a run.  README, "Adding an operator", adds one from outside.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import sympy
import torch

from prunevo.primitives.registry import (  # noqa: F401  (re-exported: the grammar's public names)
    EPS,
    FUNCTION_NAMES,
    LAYER_NORMS,
    MIN_HEIGHT,
    OPERAND_SPECS,
    OPERANDS,
    OPERATORS,
    OPS,
    OPS_BY_KEY,
    TYPE_WORDS,
    TYPES,
    ByClass,
    Extensions,
    Maps,
    MeanMaps,
    Op,
    Operand,
    Operator,
    Scores,
    Streaming,
    Weights,
    add_overload,
    extensions,
    install,
    ops_returning,
    register_operand,
    register_operator,
    registered,
    resolve,
    seal_builtins,
    signatures,
    terminals_of,
    unregister,
)

# Ephemeral constants are drawn from a short list: few distinct values keep SymPy canonical forms stable.
CONSTANT_CHOICES = (0.05, 0.1, 0.5, 1.0, 2.0)


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


# ridge of ``loo``, relative to the mean diagonal of the rows' Gram matrix: rows that span less than the layer (fewer
# samples than channels, a first convolution's short filters) still give finite errors; 1e-3 is
# ``pruning.reconstruct.Reconstruction.ridge``'s default, the refit that ``loo`` anticipates
LOO_RIDGE = 1e-3


def _loo_from_gram(gram: torch.Tensor, count: int) -> torch.Tensor:
    """Each row's squared error when the other rows predict it by least squares, per column (``loo``), from the
    rows' ``[C, C]`` Gram matrix (float64) and their length: ``1 / [(RRᵀ + λI)⁻¹]_cc / count``."""
    size = gram.shape[0]
    ridge = LOO_RIDGE * torch.trace(gram) / size + 1e-30
    inverse = torch.linalg.inv(gram + ridge * torch.eye(size, dtype=gram.dtype, device=gram.device))
    return 1.0 / torch.diagonal(inverse) / max(1, count)


def _loo(x: torch.Tensor) -> torch.Tensor:
    # leave-one-out reconstruction error (Neuron Merging's and ThiNet's idea: a channel the others predict is cheap
    # to remove once its readers are refitted): regress each channel's row on the other channels' rows; the
    # residual sum of squares of row c is 1 / [(R Rᵀ)⁻¹]_cc (the Schur complement), here per column
    rows = _rows(x).double()
    return _loo_from_gram(rows @ rows.T, rows.shape[1]).to(x.dtype)


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


# --- streaming: how a reduction of feature maps accumulates over calibration batches (``accumulators``) --------
_DIMS, _WIDE = (1, 2), torch.float64


def _add(state: dict, key: str, value: torch.Tensor) -> None:
    state[key] = value if key not in state else state[key] + value


def _summed(term: Callable[[torch.Tensor], torch.Tensor],
            finish: Callable[[torch.Tensor, int], torch.Tensor]) -> Streaming:
    """A reduction that is a function of the sum over samples and positions of ``term(values)``."""
    return Streaming(lambda s, v, _o, _n: _add(s, "sum", term(v).sum(_DIMS, dtype=_WIDE)),
                     lambda s, n: finish(s["sum"], n))


def _moments_update(s: dict, values: torch.Tensor, _onehot: torch.Tensor, count: int) -> None:
    # count, mean and sum of squared deviations merged batch by batch (Chan et al.), which avoids the
    # cancellation of E[x^2] - E[x]^2
    n = values.shape[1] * values.shape[2]
    mean_b = values.mean(_DIMS, dtype=_WIDE)
    m2_b = (values - mean_b.to(values.dtype)[:, None, None]).square().sum(_DIMS, dtype=_WIDE)
    m2_b -= n * (mean_b - mean_b.to(values.dtype).double()).square()  # the rounding of the shift
    if "mean" not in s:
        s["mean"], s["m2"] = mean_b, m2_b
    else:
        total = count + n
        delta = mean_b - s["mean"]
        s["mean"] = s["mean"] + delta * (n / total)
        s["m2"] = s["m2"] + m2_b + delta.square() * (count * n / total)


def _extreme(pick: Callable[..., torch.Tensor], combine: Callable[..., torch.Tensor]) -> Streaming:
    def update(s: dict, values: torch.Tensor, _onehot: torch.Tensor, _count: int) -> None:
        s["value"] = pick(values, _DIMS) if "value" not in s else combine(s["value"], pick(values, _DIMS))

    return Streaming(update, lambda s, _n: s["value"])


def _gram_update(s: dict, values: torch.Tensor, _onehot: torch.Tensor, _count: int) -> None:
    rows = values.reshape(values.shape[0], -1).double()  # the Gram matrix needs rows (rare: fpgm of maps)
    _add(s, "gram", rows @ rows.T)
    _add(s, "norms", rows.square().sum(1))


def _gram_distances(s: dict, _count: int) -> torch.Tensor:
    # the [C, C] Gram matrix of the channels' rows and their squared norms give the pairwise distances exactly
    norms, gram = s["norms"], s["gram"]
    distances = (norms[:, None] + norms[None, :] - 2 * gram).clamp_min(0.0).sqrt()
    distances.fill_diagonal_(0.0)
    return distances.sum(1)


def _class_update(s: dict, values: torch.Tensor, onehot: torch.Tensor, _count: int) -> None:
    onehot = onehot.to(torch.float64)
    _add(s, "sums", values.mean(2).double() @ onehot)  # [C, K] sums of each sample's mean
    _add(s, "squares", values.square().mean(2).double() @ onehot)
    _add(s, "counts", onehot.sum(0))


def _class_streaming(index: int, rest: bool) -> Streaming:
    def finish(s: dict, _count: int) -> torch.Tensor:
        return class_moments(s["sums"], s["squares"], s["counts"], rest=rest)[index]

    return Streaming(_class_update, finish, per_sample=True)


_CLASS_STATS = (("cmean", 0, False), ("cvar", 1, False), ("rmean", 0, True), ("rvar", 1, True))
_NMEAN_STREAMING = Streaming(lambda s, v, _o, _n: _add(s, "sum", v.sum(1, dtype=_WIDE)), lambda s, n: s["sum"] / n,
                             per_sample=True)



# --- operands ---------------------------------------------------------------------------------------------------
# Constants are Scores too (broadcast over channels).
register_operand("W", Weights, latex="W")
register_operand("Wn", Weights, latex=r"W_{\mathrm{next}}",
                 missing="next-layer weights that read one input row per channel (Wn)")
register_operand("F", Maps, latex="F", needs="forward")
register_operand("G", Maps, latex="G", needs="backward", missing="the loss gradient (G)")
register_operand("gamma", Scores, latex=r"\gamma", missing="BatchNorm (gamma)")
register_operand("beta", Scores, latex=r"\beta", missing="BatchNorm (beta)")
# the MACs one channel of the layer costs (what removing it saves, at full width), divided by the mean over the
# network's groups: the same for every channel of a layer, it lets a formula weigh importance against cost, which
# decides the widths under global allocation with a MACs target (as latency-aware pruning does)
register_operand("macs", Scores, latex=r"\mathrm{MACs}", optional=True)

# --- operators: their back-ends -----------------------------------------------------------------------------------
# elementwise on every type
register_operator("abs", python="{0}.abs()", sympy=sympy.Abs)
register_operator("square", python="{0}.square()", sympy=lambda a: a ** 2)
# reductions of a tensor to one score per channel
register_operator("mean", python="_rows({0}).mean(1)", streaming=_summed(lambda v: v, lambda t, n: t / n))
register_operator("std", python="_rows({0}).std(1, unbiased=False)",
                  streaming=Streaming(_moments_update, lambda s, n: (s["m2"] / n).sqrt()))
register_operator("var", python="_rows({0}).var(1, unbiased=False)",
                  streaming=Streaming(_moments_update, lambda s, n: s["m2"] / n))
register_operator("l1", python="_rows({0}).abs().sum(1)", streaming=_summed(torch.abs, lambda t, _n: t),
                  sign_blind=True)
register_operator("l2", python="_rows({0}).norm(dim=1)", streaming=_summed(torch.square, lambda t, _n: t.sqrt()),
                  sign_blind=True)
register_operator("max", python="_rows({0}).amax(1)", streaming=_extreme(torch.amax, torch.maximum))
register_operator("min", python="_rows({0}).amin(1)", streaming=_extreme(torch.amin, torch.minimum))
register_operator("sparsity", python="(_rows({0}).abs() <= EPS).to({0}.dtype).mean(1)",
                  streaming=_summed(lambda v: v.abs() <= EPS, lambda t, n: t / n), sign_blind=True)
# FPGM (He et al., CVPR 2019)
register_operator("fpgm", python="torch.cdist(_rows({0})[None], _rows({0})[None])[0].sum(1)",
                  streaming=Streaming(_gram_update, _gram_distances))
# leave-one-out reconstruction error of a channel's row from the other channels' rows (He et al. 2017, ThiNet,
# Neuron Merging: what reconstruction cannot recover when the channel goes)
register_operator("loo", python="_loo({0})",
                  streaming=Streaming(_gram_update, lambda s, n: _loo_from_gram(s["gram"], n)))
# on feature maps: products, averages over positions or samples, class statistics (the seed paper's P and Q)
register_operator("mul", python="({0} * {1})", sympy=lambda a, b: a * b, latex=r"{0} \odot {1}")
register_operator("smean", python="{0}.mean(2, keepdim=True)")  # over positions, per sample
register_operator("nmean", python="{0}.mean(1)", streaming=_NMEAN_STREAMING)  # over samples, per position
for _name, _index, _rest in _CLASS_STATS:
    register_operator(_name, python=f"_class_moments({{0}}, onehot{', rest=True' if _rest else ''})[{_index}]",
                      streaming=_class_streaming(_index, _rest), needs_labels=True)
# on scores: arithmetic, and the layer normalizations that set the widths under global allocation
register_operator("neg", python="(-{0})", sympy=lambda a: -a)
register_operator("sqrt", python="{0}.abs().sqrt()", sympy=lambda a: sympy.sqrt(sympy.Abs(a)))
register_operator("log1p", python="{0}.abs().log1p()", sympy=lambda a: sympy.log(1 + sympy.Abs(a)))
register_operator("lnorm", python="({0} / ({0}.abs().mean() + EPS))", layer_norm=True)
register_operator("lminmax", python="(({0} - {0}.amin()) / ({0}.amax() - {0}.amin() + EPS))", layer_norm=True)
register_operator("lzscore", python="(({0} - {0}.mean()) / ({0}.std(unbiased={0}.numel() > 1) + EPS))",
                  layer_norm=True)
register_operator("lamp", python="_lamp({0})", layer_norm=True)
register_operator("add", python="({0} + {1})", sympy=lambda a, b: a + b, latex=r"\left({0} + {1}\right)")
register_operator("sub", python="({0} - {1})", sympy=lambda a, b: a - b, latex=r"\left({0} - {1}\right)")
register_operator("div", python="_div({0}, {1})", sympy=lambda a, b: a / b, latex=r"\frac{{{0}}}{{{1}}}")

# --- operators: their typed forms, in the order of the first releases ---------------------------------------------
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
for _type in (Weights, Maps, MeanMaps, ByClass):
    add_overload("abs", (_type,), _type, torch.abs)
    add_overload("square", (_type,), _type, torch.square)
    for _name, _fn in _REDUCTIONS.items():
        add_overload(_name, (_type,), Scores, _fn)
add_overload("mul", (Maps, Maps), Maps, torch.mul)
add_overload("smean", (Maps,), Maps, lambda x: x.mean(2, keepdim=True))
add_overload("nmean", (Maps,), MeanMaps, lambda x: x.mean(1))
for _name, _index, _rest in _CLASS_STATS:
    add_overload(_name, (Maps,), ByClass, _class_stat(_index, rest=_rest))
for _name, _fn in {"neg": torch.neg, "abs": torch.abs, "sqrt": lambda x: torch.sqrt(x.abs()),
                   "log1p": lambda x: torch.log1p(x.abs()), "square": torch.square, "lnorm": _lnorm,
                   "lminmax": _lminmax, "lzscore": _lzscore, "lamp": _lamp}.items():
    add_overload(_name, (Scores,), Scores, _fn)
for _name, _fn in {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": _protected_div}.items():
    add_overload(_name, (Scores, Scores), Scores, _fn)
    add_overload(_name, (ByClass, ByClass), ByClass, _fn)
    add_overload(_name, (ByClass, Scores), ByClass, _per_channel(_fn, scores_first=False))
    add_overload(_name, (Scores, ByClass), ByClass, _per_channel(_fn, scores_first=True))
for _type in (Weights, Maps):  # added after the first releases' overloads: their order is unchanged
    add_overload("loo", (_type,), Scores, _loo)
seal_builtins()  # what is registered from here on travels to worker processes (``registry.extensions``)


# --- random generation ------------------------------------------------------------------------------------------
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
