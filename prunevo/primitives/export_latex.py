"""LaTeX for formulas: the simplified SymPy form, with reductions typeset as operators."""
from __future__ import annotations

import sympy

from prunevo.primitives.tree import CONST, Node
from prunevo.primitives.export_sympy import to_sympy

_OPERAND_TEX = {"W": "W", "Wn": r"W_{\mathrm{next}}", "F": "F", "G": "G", "gamma": r"\gamma", "beta": r"\beta",
                "macs": r"\mathrm{MACs}"}


def node_latex(node: Node) -> str:
    """LaTeX of a tensor-level subtree (the inside of a reduction symbol)."""
    if node.name == CONST:
        return sympy.latex(sympy.Rational(repr(node.value)))
    if not node.args:
        return _OPERAND_TEX[node.name]
    if node.name == "mul":
        return rf"{node_latex(node.args[0])} \odot {node_latex(node.args[1])}"
    if node.name == "div" and len(node.args) == 2:  # class statistics (a score in them is per channel)
        return rf"\frac{{{node_latex(node.args[0])}}}{{{node_latex(node.args[1])}}}"
    if node.name in ("add", "sub") and len(node.args) == 2:
        sign = "+" if node.name == "add" else "-"
        return rf"\left({node_latex(node.args[0])} {sign} {node_latex(node.args[1])}\right)"
    inner = ", ".join(node_latex(a) for a in node.args)
    return rf"\operatorname{{{node.name}}}\left({inner}\right)"


def to_latex(expr: sympy.Expr) -> str:
    from prunevo.primitives.parser import parse

    names = {}
    for sym in expr.free_symbols:
        names[sym] = node_latex(parse(sym.name))
    return sympy.latex(expr, symbol_names=names)


def tree_latex(node: Node) -> str:
    return to_latex(to_sympy(node))
