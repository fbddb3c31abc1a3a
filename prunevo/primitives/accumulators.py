"""Feature-map statistics reduced as calibration batches stream by, so memory does not grow with the images.

Every feature-map subexpression of the grammar is local to a sample: ``abs``, ``square`` and ``mul`` act
elementwise and ``smean`` averages one sample's positions.  So a batch's slice of any such subexpression
is computed from that batch alone, and only the operators that leave the feature-map type (the
*boundaries*: ``mean``, ``var``, ``std``, ``l1``, ``l2``, ``max``, ``min``, ``sparsity``, ``fpgm``, ``cmean``,
``cvar``, ``rmean``, ``rvar``, ``nmean``) need to see all samples.  Each has an accumulator of fixed size per
channel:

* ``mean``, ``l1``, ``l2``, ``sparsity``: a sum and a count;
* ``var``, ``std``: count, mean and sum of squared deviations, merged batch by batch (Chan et al.), which
  avoids the cancellation of ``E[x^2] - E[x]^2``;
* ``max``, ``min``: the running extreme;
* ``cmean``, ``cvar``, ``rmean``, ``rvar``: per-class sums of each sample's mean and mean square, and the
  class counts ([C, K] per channel; the rest of the classes is the total minus the class);
* ``nmean``: the sum over samples at every position ([C, S]: positions, not images);
* ``fpgm`` on feature maps: the [C, C] Gram matrix of the channels' rows and their squared norms, from which
  the pairwise distances follow exactly (the one accumulator that grows with channels, not with images).

Sums are kept in float64 and the results are returned in the feature maps' dtype, so they equal the
whole-tensor evaluation within floating-point rounding.
"""
from __future__ import annotations

from typing import Callable

import torch

from prunevo.primitives.grammar import EPS, Maps, class_moments
from prunevo.primitives.tree import Node, op_of


def boundaries(tree: Node) -> list[Node]:
    """The distinct nodes that reduce a feature-map subexpression to scores or class statistics, in prefix
    order (the nodes a streamed calibration must accumulate)."""
    found: dict[Node, None] = {}

    def visit(node: Node) -> None:
        if not node.args:
            return
        op = op_of(node)
        if Maps in op.args and op.ret is not Maps:
            found.setdefault(node)
            return  # the feature-map subtree below is evaluated per batch
        for arg in node.args:
            visit(arg)

    visit(tree)
    return list(found)


def reads_gradients(node: Node) -> bool:
    return any(n.name == "G" and not n.args for n in node.walk())


def evaluate_maps(node: Node, operands: dict[str, torch.Tensor], memo: dict[Node, torch.Tensor]) -> torch.Tensor:
    """A feature-map subexpression on one batch's ``F`` and ``G`` ([C, n, S]); ``memo`` shares identical
    subtrees within the batch."""
    if node in memo:
        return memo[node]
    if not node.args:
        out = operands[node.name]
    else:
        out = op_of(node).fn(*(evaluate_maps(a, operands, memo) for a in node.args))
    memo[node] = out
    return out


class Accumulator:
    """One boundary node's running state for one layer: ``update`` with each batch of its feature-map
    argument ([C, n, S]), then ``result`` ([C]; [C, K] for class statistics, [C, S] for ``nmean``)."""

    def __init__(self, name: str, num_classes: int):
        if name not in _FINISH:
            raise ValueError(f"no streaming accumulator for {name!r}")
        self.name = name
        self.num_classes = num_classes
        self.count = 0
        self.dtype: torch.dtype | None = None
        self.state: dict[str, torch.Tensor] = {}

    def update(self, values: torch.Tensor, labels_onehot: torch.Tensor) -> None:
        """Add one batch: ``values`` [C, n, S] may be a strided view (reductions run over dims 1 and 2 in
        place; sums are taken in float64 without a float64 copy of the batch)."""
        self.dtype = values.dtype
        if self.name in _CLASS_STATS:
            self._update_classes(values, labels_onehot)
            return
        if self.name == "nmean":
            _add(self.state, "sum", values.sum(1, dtype=torch.float64))
            self.count += values.shape[1]
            return
        dims, wide = (1, 2), torch.float64
        n = values.shape[1] * values.shape[2]
        s = self.state
        if self.name == "mean":
            _add(s, "sum", values.sum(dims, dtype=wide))
        elif self.name in ("var", "std"):
            mean_b = values.mean(dims, dtype=wide)
            m2_b = (values - mean_b.to(values.dtype)[:, None, None]).square().sum(dims, dtype=wide)
            m2_b -= n * (mean_b - mean_b.to(values.dtype).double()).square()  # the rounding of the shift
            if "mean" not in s:
                s["mean"], s["m2"] = mean_b, m2_b
            else:
                total = self.count + n
                delta = mean_b - s["mean"]
                s["mean"] = s["mean"] + delta * (n / total)
                s["m2"] = s["m2"] + m2_b + delta.square() * (self.count * n / total)
        elif self.name == "l1":
            _add(s, "sum", values.abs().sum(dims, dtype=wide))
        elif self.name == "l2":
            _add(s, "sum", values.square().sum(dims, dtype=wide))
        elif self.name == "max":
            s["value"] = values.amax(dims) if "value" not in s else torch.maximum(s["value"], values.amax(dims))
        elif self.name == "min":
            s["value"] = values.amin(dims) if "value" not in s else torch.minimum(s["value"], values.amin(dims))
        elif self.name == "sparsity":
            _add(s, "sum", (values.abs() <= EPS).sum(dims, dtype=wide))
        elif self.name == "fpgm":
            rows = values.reshape(values.shape[0], -1).double()  # the Gram matrix needs rows (rare: fpgm of maps)
            _add(s, "gram", rows @ rows.T)
            _add(s, "norms", rows.square().sum(1))
        self.count += n

    def _update_classes(self, values: torch.Tensor, labels_onehot: torch.Tensor) -> None:
        onehot = labels_onehot.to(torch.float64)
        _add(self.state, "sums", values.mean(2).double() @ onehot)  # [C, K] sums of each sample's mean
        _add(self.state, "squares", values.square().mean(2).double() @ onehot)
        _add(self.state, "counts", onehot.sum(0))
        self.count += values.shape[1]

    def result(self) -> torch.Tensor:
        if self.count == 0:
            raise ValueError("an accumulator needs at least one batch")
        return _FINISH[self.name](self.state, self.count).to(self.dtype)


def _add(state: dict[str, torch.Tensor], key: str, value: torch.Tensor) -> None:
    state[key] = value if key not in state else state[key] + value


def _fpgm(state: dict[str, torch.Tensor], _count: int) -> torch.Tensor:
    norms, gram = state["norms"], state["gram"]
    distances = (norms[:, None] + norms[None, :] - 2 * gram).clamp_min(0.0).sqrt()
    distances.fill_diagonal_(0.0)
    return distances.sum(1)


def _class_stat(index: int, rest: bool) -> Callable[[dict[str, torch.Tensor], int], torch.Tensor]:
    return lambda s, _n: class_moments(s["sums"], s["squares"], s["counts"], rest=rest)[index]


_CLASS_STATS = ("cmean", "cvar", "rmean", "rvar")


_FINISH: dict[str, Callable[[dict[str, torch.Tensor], int], torch.Tensor]] = {
    "mean": lambda s, n: s["sum"] / n,
    "var": lambda s, n: s["m2"] / n,
    "std": lambda s, n: (s["m2"] / n).sqrt(),
    "l1": lambda s, n: s["sum"],
    "l2": lambda s, n: s["sum"].sqrt(),
    "max": lambda s, n: s["value"],
    "min": lambda s, n: s["value"],
    "sparsity": lambda s, n: s["sum"] / n,
    "fpgm": _fpgm,
    "cmean": _class_stat(0, rest=False),
    "cvar": _class_stat(1, rest=False),
    "rmean": _class_stat(0, rest=True),
    "rvar": _class_stat(1, rest=True),
    "nmean": lambda s, n: s["sum"] / n,
}

STREAMED: frozenset[str] = frozenset(_FINISH)  # the boundary operators that have an accumulator
