"""DEAP glue: the typed primitive set derived from the grammar, individuals, and tree conversions.

DEAP's ``creator`` would register classes globally (which breaks notebooks and pickling); the fitness and
individual classes are plain classes here instead.
"""
from __future__ import annotations

import random

from deap import base, gp

from prunevo.primitives import grammar
from prunevo.primitives.formula import Formula
from prunevo.primitives.tree import CONST, Node, op_of


class FitnessMax(base.Fitness):
    weights = (1.0,)


class Individual(gp.PrimitiveTree):
    """A DEAP tree with a fitness; ``formula`` converts it to the prunevo value type."""

    def __init__(self, content):
        super().__init__(content)
        self.fitness = FitnessMax()

    @property
    def formula(self) -> Formula:
        return Formula(to_node(self))


def draw_constant() -> float:
    # module-level (not a lambda) so that DEAP can pickle the ephemeral class
    return random.choice(grammar.CONSTANT_CHOICES)


def build_pset() -> gp.PrimitiveSetTyped:
    pset = gp.PrimitiveSetTyped("criterion", [], grammar.Scores)
    for op in grammar.OPS:
        pset.addPrimitive(op.fn, list(op.args), op.ret, name=op.key)
    for name, type_ in grammar.OPERANDS.items():
        pset.addTerminal(name, type_, name=name)
    pset.addEphemeralConstant("prunevo_const", draw_constant, grammar.Scores)
    return pset


def _constant(pset: gp.PrimitiveSetTyped, value: float) -> gp.Terminal:
    cls = pset.mapping["prunevo_const"]
    term = object.__new__(cls)  # bypass __init__: it would draw a random value
    term.value = float(value)
    return term


def to_deap(node: Node, pset: gp.PrimitiveSetTyped) -> Individual:
    tokens = []
    for n in node.walk():
        if n.name == CONST:
            tokens.append(_constant(pset, n.value))
        elif not n.args:
            tokens.append(pset.mapping[n.name])
        else:
            tokens.append(pset.mapping[op_of(n).key])
    return Individual(tokens)


def to_node(tree: gp.PrimitiveTree) -> Node:
    def build(i: int) -> tuple[Node, int]:
        token = tree[i]
        if isinstance(token, gp.Primitive):
            args, j = [], i + 1
            for _ in range(token.arity):
                child, j = build(j)
                args.append(child)
            return Node(grammar.OPS_BY_KEY[token.name].name, tuple(args)), j
        if isinstance(token.value, str):
            return Node(token.value), i + 1
        return Node.const(token.value), i + 1

    node, end = build(0)
    assert end == len(tree)
    return node


def generate_tokens(pset: gp.PrimitiveSetTyped, min_: int, max_: int, grow: bool, type_=None) -> list:
    """Random well-typed DEAP tokens (global ``random``, seeded per generation by the engine)."""
    nodes = grammar.generate(random, min_, max_, grow, type_ or grammar.Scores)
    tokens = []
    for g in nodes:
        if g.op is not None:
            tokens.append(pset.mapping[g.op.key])
        elif g.operand is not None:
            tokens.append(pset.mapping[g.operand])
        else:
            tokens.append(_constant(pset, g.value))
    return tokens


def gen_half_and_half(pset: gp.PrimitiveSetTyped, min_: int, max_: int, type_=None) -> list:
    return generate_tokens(pset, min_, max_, random.random() < 0.5, type_)


def gen_grow(pset: gp.PrimitiveSetTyped, min_: int, max_: int, type_=None) -> list:
    return generate_tokens(pset, min_, max_, True, type_)
