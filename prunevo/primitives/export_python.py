"""A standalone Python/torch function for a formula: paste it anywhere, it needs only torch."""
from __future__ import annotations


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


def _class_moments(x, onehot, rest=False):
    sums, squares, counts = x.mean(2) @ onehot, (x * x).mean(2) @ onehot, onehot.sum(0)
    if rest:  # the samples of every other class
        sums, squares, counts = sums.sum(1, keepdim=True) - sums, squares.sum(1, keepdim=True) - squares, counts.sum() - counts
    mean = sums / counts.clamp_min(1.0)
    return mean, (squares / counts.clamp_min(1.0) - mean * mean).clamp_min(0.0)
'''

_TENSOR_FN = {
    "abs": "{0}.abs()",
    "square": "{0}.square()",
    "mul": "({0} * {1})",
    "smean": "{0}.mean(2, keepdim=True)",
    "nmean": "{0}.mean(1)",
    "cmean": "_class_moments({0}, onehot)[0]",
    "cvar": "_class_moments({0}, onehot)[1]",
    "rmean": "_class_moments({0}, onehot, rest=True)[0]",
    "rvar": "_class_moments({0}, onehot, rest=True)[1]",
    "mean": "_rows({0}).mean(1)",
    "std": "_rows({0}).std(1, unbiased=False)",
    "var": "_rows({0}).var(1, unbiased=False)",
    "l1": "_rows({0}).abs().sum(1)",
    "l2": "_rows({0}).norm(dim=1)",
    "max": "_rows({0}).amax(1)",
    "min": "_rows({0}).amin(1)",
    "sparsity": "(_rows({0}).abs() <= EPS).to({0}.dtype).mean(1)",
    "fpgm": "torch.cdist(_rows({0})[None], _rows({0})[None])[0].sum(1)",
    "neg": "(-{0})",
    "sqrt": "{0}.abs().sqrt()",
    "log1p": "{0}.abs().log1p()",
    "lnorm": "({0} / ({0}.abs().mean() + EPS))",
    "lminmax": "(({0} - {0}.amin()) / ({0}.amax() - {0}.amin() + EPS))",
    "lzscore": "(({0} - {0}.mean()) / ({0}.std(unbiased={0}.numel() > 1) + EPS))",
    "lamp": "_lamp({0})",
    "add": "({0} + {1})",
    "sub": "({0} - {1})",
    "div": "_div({0}, {1})",
}


def _expr(node: Node) -> str:
    if node.name == CONST:
        return f"torch.full((W.shape[0],), {node.value!r}, dtype=W.dtype)"
    if not node.args:
        return node.name
    op = op_of(node)  # type-checks
    args = [_expr(a) for a in node.args]
    if op.ret is grammar.ByClass and len(args) == 2:  # a channel's score applies to each of its classes
        args = [f"{a}[:, None]" if t is grammar.Scores else a for a, t in zip(args, op.args)]
    return _TENSOR_FN[node.name].format(*args)


def to_python(node: Node, function_name: str = "criterion", text: str = "") -> str:
    """Source of ``def criterion(W, Wn, F, G, gamma, beta, onehot, macs=None) -> scores[C]`` (``macs``: the
    MACs a channel of the layer costs, relative to the network's mean, for formulas that read it)."""
    assert type_of(node) is grammar.Scores
    doc = f'    """{text}"""\n' if text else ""
    return (
        _HELPERS.format(eps=grammar.EPS)
        + f"\n\ndef {function_name}(W, Wn, F, G, gamma, beta, onehot, macs=None):\n{doc}"
        + "    with torch.no_grad():\n"
        + f"        return {_expr(node)}\n"
    )
