"""Formula trees <-> SymPy: exact algebra on the score level, reductions as opaque named symbols.

Only the score-level operators with a SymPy form (``registry.Operator.sympy``: + - * /, neg, abs, sqrt|x|,
log1p|x|, square) are algebra; each reduction subtree (``l1(W)``, ``var(cmean(F))``...) is one symbol named by its
text, and a score operator without a SymPy form (the layer normalizations ``lnorm``, ``lminmax``, ``lzscore``,
``lamp``) is an undefined function of its name.  Constants become exact rationals so that simplification is
exact.
"""
from __future__ import annotations

import sympy

from prunevo.errors import FormulaError
from prunevo.primitives import grammar
from prunevo.primitives.tree import CONST, Node, to_text, type_of

SIMPLIFY_MAX_NODES = 80  # sympy.simplify is super-linear; bigger trees keep SymPy's automatic canonical form


def _symbol(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, real=True)


# Identities inside reductions, where SymPy cannot see (a reduction is one opaque symbol).
_IDEMPOTENT_AFTER = {("abs", "abs"), ("abs", "square"), ("square", "abs")}  # outer(inner(x)) == inner/square


def canonical_tensor(node: Node) -> Node:
    """Rewrite tensor-level subtrees: abs(abs(x)) = abs(x), abs(square(x)) = square(abs(x)) = square(x),
    r(abs(x)) = r(x) for a sign-blind reduction r (l1, l2, sparsity)."""
    if not node.args:
        return node
    args = tuple(canonical_tensor(a) for a in node.args)
    if len(args) == 1 and type_of(args[0]) is not grammar.Scores:
        inner = args[0]
        if (node.name, inner.name) in _IDEMPOTENT_AFTER:
            return inner if node.name == "abs" else Node("square", inner.args)
        if grammar.OPERATORS[node.name].sign_blind and inner.name == "abs":  # a reduction of |x|
            return Node(node.name, inner.args)
    return Node(node.name, args, node.value)


def to_sympy(node: Node) -> sympy.Expr:
    if node.name == CONST:
        return sympy.Rational(repr(node.value))
    if not node.args or type_of(node) is grammar.Scores and node.args and type_of(node.args[0]) is not grammar.Scores:
        return _symbol(to_text(canonical_tensor(node)))  # an operand (gamma, beta) or a reduction of a tensor
    a = [to_sympy(arg) for arg in node.args]
    operator = grammar.OPERATORS[node.name]
    if operator.sympy is not None:
        return operator.sympy(*a)
    if len(a) == 1:
        return sympy.Function(node.name)(a[0])  # opaque (a layer normalization reads the whole layer)
    raise FormulaError(f"no SymPy form for {node.name!r}")


def simplify(expr: sympy.Expr, size: int) -> sympy.Expr:
    if size > SIMPLIFY_MAX_NODES:
        return expr
    simplified = sympy.simplify(expr)
    # simplify may return a longer form; keep the shorter one
    return simplified if sympy.count_ops(simplified) <= sympy.count_ops(expr) else expr


def _number(value: sympy.Expr) -> Node:
    v = float(value)
    return Node("neg", (Node.const(-v),)) if v < 0 else Node.const(v)


def _fold(nodes: list[Node], op: str) -> Node:
    out = nodes[0]
    for n in nodes[1:]:
        out = Node(op, (out, n))
    return out


def from_sympy(expr: sympy.Expr) -> Node:
    """The tree of a SymPy expression, or FormulaError when the grammar cannot express it."""
    from prunevo.primitives.parser import parse  # symbol names are formula text

    if expr.is_Number:
        if not expr.is_finite:
            raise FormulaError("not finite")
        return _number(expr)
    if expr.is_Symbol:
        return parse(expr.name)
    if isinstance(expr, sympy.Add):
        pos, neg = [], []
        for term in sympy.Add.make_args(expr):
            coeff, rest = term.as_coeff_Mul()
            (neg if coeff < 0 else pos).append(from_sympy(-term) if coeff < 0 else from_sympy(term))
        if not pos:
            return Node("neg", (_fold(neg, "add"),))
        out = _fold(pos, "add")
        for n in neg:
            out = Node("sub", (out, n))
        return out
    if isinstance(expr, sympy.Mul):
        coeff, rest = expr.as_coeff_Mul()
        if coeff < 0:
            return Node("neg", (from_sympy(-expr),))
        num, den = [], []
        for factor in sympy.Mul.make_args(expr):
            base, exp = factor.as_base_exp()
            if exp.is_Number and exp < 0:
                den.append(from_sympy(base ** (-exp)))
            else:
                num.append(from_sympy(factor))
        out = _fold(num, "mul") if num else Node.const(1.0)
        return Node("div", (out, _fold(den, "mul"))) if den else out
    if isinstance(expr, sympy.Pow):
        base, exp = expr.args
        if exp == sympy.Rational(1, 2) and isinstance(base, sympy.Abs):
            return Node("sqrt", (from_sympy(base.args[0]),))
        if exp == sympy.Rational(1, 2) and base.is_nonnegative:
            return Node("sqrt", (from_sympy(base),))
        if exp == 2:
            return Node("square", (from_sympy(base),))
        if exp.is_Integer and exp > 2:
            return Node("mul", (from_sympy(base ** (exp - 1)), from_sympy(base)))
        if exp.is_Integer and exp < 0:
            return Node("div", (Node.const(1.0), from_sympy(base ** (-exp))))
        raise FormulaError(f"power {exp} has no form in the grammar")
    if isinstance(expr, sympy.Abs):
        return Node("abs", (from_sympy(expr.args[0]),))
    if isinstance(expr, sympy.log):
        inner = expr.args[0] - 1
        if isinstance(inner, sympy.Abs):
            return Node("log1p", (from_sympy(inner.args[0]),))
        raise FormulaError("log has no form in the grammar")
    name = str(expr.func)
    if isinstance(expr, sympy.Function) and name in grammar.OPERATORS and len(expr.args) == 1:
        return Node(name, (from_sympy(expr.args[0]),))  # an opaque score operator
    raise FormulaError(f"{type(expr).__name__} has no form in the grammar")
