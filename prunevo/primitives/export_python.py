"""A standalone Python/torch function for a formula: paste it anywhere, it needs only torch."""
from __future__ import annotations

from prunevo.errors import FormulaError
from prunevo.primitives import grammar
from prunevo.primitives.tree import CONST, Node, op_of, type_of

_HELPERS = '''import torch

EPS = {eps!r}


def _rows(x):
    return x.reshape(x.shape[0], -1)


def _div(a, b):
    return a / torch.where(b.abs() < EPS, torch.where(b < 0, -EPS, EPS) * torch.ones_like(b), b)


def _lamp(x):  # LAMP: |x| over the sum of the |x| not below it in the layer (ties in channel order)
    a = x.abs()
    order = torch.argsort(a, stable=True)
    out = torch.empty_like(a)
    out[order] = a[order] / (a[order].flip(0).cumsum(0).flip(0) + EPS)
    return out


def _loo(x):  # each row's least-squares error from the other rows, per column: 1 / [(R R^T + ridge)^-1]_cc / D
    rows = _rows(x).double()
    gram = rows @ rows.T
    ridge = {loo_ridge!r} * torch.trace(gram) / gram.shape[0] + 1e-30
    inverse = torch.linalg.inv(gram + ridge * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device))
    return (1.0 / torch.diagonal(inverse) / max(1, rows.shape[1])).to(x.dtype)


def _class_moments(x, onehot, rest=False):
    sums, squares, counts = x.mean(2) @ onehot, (x * x).mean(2) @ onehot, onehot.sum(0)
    if rest:  # the samples of every other class
        sums, squares = sums.sum(1, keepdim=True) - sums, squares.sum(1, keepdim=True) - squares
        counts = counts.sum() - counts
    mean = sums / counts.clamp_min(1.0)
    return mean, (squares / counts.clamp_min(1.0) - mean * mean).clamp_min(0.0)
'''


def _expr(node: Node) -> str:
    if node.name == CONST:
        return f"torch.full((W.shape[0],), {node.value!r}, dtype=W.dtype)"
    if not node.args:
        return node.name
    op = op_of(node)  # type-checks
    args = [_expr(a) for a in node.args]
    if op.ret is grammar.ByClass and len(args) == 2:  # a channel's score applies to each of its classes
        args = [f"{a}[:, None]" if t is grammar.Scores else a for a, t in zip(args, op.args)]
    return grammar.OPERATORS[node.name].python.format(*args)


def signature() -> str:
    """The exported function's parameters: the operands in registration order, then the labels one-hot
    (``onehot``, [N, K]), then the optional operands with default None: ``W, Wn, F, G, gamma, beta, onehot,
    macs=None`` for prunevo's own."""
    specs = grammar.OPERAND_SPECS.values()
    return ", ".join([s.name for s in specs if not s.optional] + ["onehot"]
                     + [f"{s.name}=None" for s in specs if s.optional])


def to_python(node: Node, function_name: str = "criterion", text: str = "") -> str:
    """A standalone Python/torch function for a formula tree.

    Args:
        node: a tree that returns scores.
        function_name: the function's name.
        text: its docstring (the formula's text).

    Returns:
        The source of ``def criterion(W, Wn, F, G, gamma, beta, onehot, macs=None)`` (``signature``) returning
        one score per channel ``[C]``; it needs only torch.  ``macs`` is the MACs a channel of the layer costs,
        relative to the network's mean, for formulas that read it.

    Raises:
        FormulaError: a tree that does not type-check or does not return scores.
    """
    if type_of(node) is not grammar.Scores:
        raise FormulaError(f"a criterion returns scores, not {grammar.TYPE_WORDS[type_of(node)]}")
    doc = f'    """{text}"""\n' if text else ""
    return (
        _HELPERS.format(eps=grammar.EPS, loo_ridge=grammar.LOO_RIDGE)
        + f"\n\ndef {function_name}({signature()}):\n{doc}"
        + "    with torch.no_grad():\n"
        + f"        return {_expr(node)}\n"
    )
