"""Feature-map statistics reduced as calibration batches stream by, so memory does not grow with the images.

Every feature-map subexpression of the grammar is local to a sample: ``abs``, ``square`` and ``mul`` act
elementwise and ``smean`` averages one sample's positions.  So a batch's slice of any such subexpression
is computed from that batch alone, and only the operators that leave the feature-map type (the
*boundaries*: ``mean``, ``var``, ``std``, ``l1``, ``l2``, ``max``, ``min``, ``sparsity``, ``fpgm``, ``cmean``,
``cvar``, ``rmean``, ``rvar``, ``nmean``) need to see all samples.  Each has an accumulator of fixed size per
channel, registered with the operator (``registry.Streaming``; prunevo's own in ``grammar``):

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

import torch

from prunevo.primitives.grammar import OPERAND_SPECS, OPERATORS, Maps, Streaming
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
    """Whether ``node`` reads an operand that needs a backward pass (``G``)."""
    return any(not n.args and n.name in OPERAND_SPECS and OPERAND_SPECS[n.name].needs == "backward"
               for n in node.walk())


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
    argument ([C, n, S]), then ``result`` ([C]; [C, K] for class statistics, [C, S] for ``nmean``).

    What it keeps is the operator's ``Streaming`` (``registry.Operator.streaming``, registered with it).

    Args:
        name: a registered operator that reduces feature maps.
        num_classes: K, the classes of the calibration labels.

    Raises:
        ValueError: an operator without streaming.
    """

    def __init__(self, name: str, num_classes: int):
        operator = OPERATORS.get(name)
        if operator is None or operator.streaming is None:
            raise ValueError(f"no streaming accumulator for {name!r}")
        self.name = name
        self.streaming: Streaming = operator.streaming
        self.num_classes = num_classes
        self.count = 0
        self.dtype: torch.dtype | None = None
        self.state: dict[str, torch.Tensor] = {}

    def update(self, values: torch.Tensor, labels_onehot: torch.Tensor) -> None:
        """Add one batch: ``values`` [C, n, S] may be a strided view (reductions run over dims 1 and 2 in
        place; sums are taken in float64 without a float64 copy of the batch); ``labels_onehot`` [n, K]."""
        self.dtype = values.dtype
        self.streaming.update(self.state, values, labels_onehot, self.count)
        self.count += values.shape[1] * (1 if self.streaming.per_sample else values.shape[2])

    def result(self) -> torch.Tensor:
        """The reduction over every batch so far, in the batches' dtype.  Raises ValueError before any."""
        if self.count == 0:
            raise ValueError("an accumulator needs at least one batch")
        return self.streaming.finish(self.state, self.count).to(self.dtype)


def streamed() -> frozenset[str]:
    """The operators that have an accumulator (every reduction of feature maps has one)."""
    return frozenset(name for name, operator in OPERATORS.items() if operator.streaming is not None)
