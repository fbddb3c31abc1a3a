"""Compile a formula tree into a function from one layer's statistics to one score per channel.

Evolution scores thousands of formulas that share most of their subtrees (offspring are their parents'
subtrees recombined).  Each layer's statistics therefore remember the per-channel values of the subtrees
scored on them (``LayerStats.vectors``: vectors only, so memory is bounded by ``VECTOR_MEMO`` x channels,
never by weight or activation sizes); a tree reuses them, and within one tree identical subtrees are
computed once.  The same subtree on the same statistics gives the same tensor, so reuse changes nothing.
"""
from __future__ import annotations

from typing import Callable

import torch

from prunevo.primitives.operands import LayerStats
from prunevo.primitives.tree import CONST, Node, op_of

VECTOR_MEMO = 20000  # remembered subtree vectors per layer; emptied when full


def compile_tree(tree: Node) -> Callable[[LayerStats], torch.Tensor]:
    """Resolve every overload once; the returned function is vectorised over channels."""

    def build(node: Node) -> Callable[[LayerStats, dict], torch.Tensor]:
        if node.name == CONST:
            value = node.value
            return lambda stats, memo: torch.full((stats.channels,), value, dtype=stats.W.dtype, device=stats.W.device)
        if not node.args:
            name = node.name
            return lambda stats, memo: stats.operand(name)
        op = op_of(node)
        children = [build(a) for a in node.args]
        key = node

        def apply(stats: LayerStats, memo: dict) -> torch.Tensor:
            if key in memo:  # identical subtrees (common in evolved trees) are computed once
                return memo[key]
            out = stats.vectors.get(key)
            if out is None:
                values = [child(stats, memo) for child in children]
                if op.needs_labels:
                    values.append(stats.labels_onehot)
                out = op.fn(*values)
                if out.dim() <= 1:
                    if len(stats.vectors) >= VECTOR_MEMO:
                        stats.vectors.clear()
                    stats.vectors[key] = out
            memo[key] = out
            return out

        return apply

    root = build(tree)

    def score(stats: LayerStats) -> torch.Tensor:
        with torch.no_grad():
            out = root(stats, {})
        return out.expand(stats.channels) if out.dim() == 0 else out

    return score
