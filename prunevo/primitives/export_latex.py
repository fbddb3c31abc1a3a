"""LaTeX for formulas: the simplified SymPy form, with reductions typeset as operators."""
from __future__ import annotations

import sympy

from prunevo.primitives import grammar
from prunevo.primitives.export_sympy import to_sympy
from prunevo.primitives.tree import CONST, Node


def node_latex(node: Node) -> str:
    """LaTeX of a tensor-level subtree (the inside of a reduction symbol)."""
    if node.name == CONST:
        return sympy.latex(sympy.Rational(repr(node.value)))
    if not node.args:
        return grammar.OPERAND_SPECS[node.name].latex
    inner = [node_latex(a) for a in node.args]
    template = grammar.OPERATORS[node.name].latex
    if template is not None:  # (a score inside class statistics is per channel)
        return template.format(*inner)
    return rf"\operatorname{{{node.name}}}\left({', '.join(inner)}\right)"


def to_latex(expr: sympy.Expr) -> str:
    from prunevo.primitives.parser import parse

    names = {}
    for sym in expr.free_symbols:
        names[sym] = node_latex(parse(sym.name))
    return sympy.latex(expr, symbol_names=names)


def tree_latex(node: Node) -> str:
    return to_latex(to_sympy(node))
