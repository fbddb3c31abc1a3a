"""Compile a formula tree into a function from one layer's statistics to one score per channel."""
from __future__ import annotations

from typing import Callable

import torch

from prunevo.primitives.operands import LayerStats
from prunevo.primitives.tree import CONST, Node, op_of


def compile_tree(tree: Node) -> Callable[[LayerStats], torch.Tensor]:
    """Resolve every overload once; the returned function is vectorised over channels."""

    def build(node: Node) -> Callable[[LayerStats, dict], torch.Tensor]:
        if node.name == CONST:
            value = node.value
            return lambda stats, memo: torch.full((stats.channels,), value, dtype=stats.W.dtype)
        if not node.args:
            name = node.name
            return lambda stats, memo: stats.operand(name)
        op = op_of(node)
        children = [build(a) for a in node.args]
        key = node

        def apply(stats: LayerStats, memo: dict) -> torch.Tensor:
            if key in memo:  # identical subtrees (common in evolved trees) are computed once
                return memo[key]
            values = [child(stats, memo) for child in children]
            if op.needs_labels:
                values.append(stats.labels_onehot)
            memo[key] = out = op.fn(*values)
            return out

        return apply

    root = build(tree)

    def score(stats: LayerStats) -> torch.Tensor:
        with torch.no_grad():
            out = root(stats, {})
        return out.expand(stats.channels) if out.dim() == 0 else out

    return score
