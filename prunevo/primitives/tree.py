"""Formula trees: an immutable node type, type inference against the grammar, and the canonical text."""
from __future__ import annotations

from dataclasses import dataclass

from prunevo.errors import FormulaError
from prunevo.primitives import grammar

CONST = "const"
INFIX = {"add": ("+", 1), "sub": ("-", 1), "mul": ("*", 2), "div": ("/", 2)}
NEG_LEVEL = 3
ATOM_LEVEL = 4


@dataclass(frozen=True)
class Node:
    """One node: an operator with children, an operand (``W``, ``gamma``...), or a constant."""

    name: str
    args: tuple["Node", ...] = ()
    value: float | None = None

    @staticmethod
    def const(value: float) -> "Node":
        return Node(CONST, (), float(value))

    def walk(self):
        """Nodes in prefix order."""
        yield self
        for arg in self.args:
            yield from arg.walk()

    def size(self) -> int:
        return sum(1 for _ in self.walk())

    def height(self) -> int:
        return 0 if not self.args else 1 + max(a.height() for a in self.args)


def type_of(node: Node) -> type:
    """Infer the grammar type of ``node``; raise FormulaError naming the offending sub-expression."""
    if node.name == CONST:
        return grammar.Scores
    if not node.args:
        if node.name in grammar.OPERANDS:
            return grammar.OPERANDS[node.name]
        raise FormulaError(f"unknown operand {node.name!r}; allowed operands: {', '.join(grammar.OPERANDS)}")
    arg_types = tuple(type_of(a) for a in node.args)
    op = grammar.resolve(node.name, arg_types)
    if op is None:
        if node.name not in grammar.FUNCTION_NAMES:
            raise FormulaError(
                f"unknown function {node.name!r}; allowed functions: {', '.join(grammar.FUNCTION_NAMES)}"
            )
        given = ", ".join(grammar.TYPE_WORDS[t] for t in arg_types)
        raise FormulaError(
            f"{to_text(node)}: {node.name} does not take ({given}); allowed: {'; '.join(grammar.signatures(node.name))}"
        )
    return op.ret


def op_of(node: Node) -> grammar.Op:
    op = grammar.resolve(node.name, tuple(type_of(a) for a in node.args))
    assert op is not None, node
    return op


def _level(node: Node) -> int:
    if node.name in INFIX and len(node.args) == 2:
        return INFIX[node.name][1]
    if node.name == "neg":
        return NEG_LEVEL
    return ATOM_LEVEL


def format_number(value: float) -> str:
    return repr(float(value))


def to_text(node: Node) -> str:
    """Exact, re-parseable infix text: ``parse(to_text(t)) == t`` for every tree ``t``."""
    if node.name == CONST:
        return format_number(node.value)
    if not node.args:
        return node.name
    level = _level(node)
    if node.name in INFIX and len(node.args) == 2:
        left, right = node.args
        left_text = to_text(left)
        right_text = to_text(right)
        if _level(left) < level:
            left_text = f"({left_text})"
        if _level(right) <= level:  # right-nested same-level ops need parentheses to keep the tree
            right_text = f"({right_text})"
        return f"{left_text} {INFIX[node.name][0]} {right_text}"
    if node.name == "neg":
        inner = to_text(node.args[0])
        if _level(node.args[0]) < ATOM_LEVEL:
            inner = f"({inner})"
        return f"-{inner}"
    return f"{node.name}({', '.join(to_text(a) for a in node.args)})"
