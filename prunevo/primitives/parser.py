"""A whitelist parser for formulas written by people.

Grammar (precedence climbing, no ``eval``/``sympify``): numbers, operand names, function calls on names
from the grammar, unary minus, ``+ - * /`` and parentheses.  Anything else is rejected with a message that
names the token, its position, and what is allowed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from prunevo.errors import FormulaError
from prunevo.primitives import grammar
from prunevo.primitives.tree import Node, type_of

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z_0-9]*)|(?P<punct>[-+*/(),]))"
)
_BINARY = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
MAX_LENGTH = 10_000


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    pos: int


def _allowed() -> str:
    return (
        f"operands: {', '.join(grammar.OPERANDS)}; functions: {', '.join(grammar.FUNCTION_NAMES)}; "
        "operators: + - * / and parentheses; numbers"
    )


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    stripped_end = len(text.rstrip())
    while pos < stripped_end:
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            bad = text[pos:].lstrip()[:1]
            where = pos + (len(text[pos:]) - len(text[pos:].lstrip()))
            raise FormulaError(f"unexpected character {bad!r} at position {where} in formula; allowed: {_allowed()}")
        kind = match.lastgroup
        tokens.append(_Token(kind, match.group(kind), match.start(kind)))
        pos = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            found = repr(tok.text) if tok.kind != "end" else "end of formula"
            raise FormulaError(f"expected {text!r} at position {tok.pos}, found {found}")

    def additive(self) -> Node:
        node = self.multiplicative()
        while self.peek().text in ("+", "-"):
            op = _BINARY[self.take().text]
            node = Node(op, (node, self.multiplicative()))
        return node

    def multiplicative(self) -> Node:
        node = self.unary()
        while self.peek().text in ("*", "/"):
            op = _BINARY[self.take().text]
            node = Node(op, (node, self.unary()))
        return node

    def unary(self) -> Node:
        if self.peek().text == "-":
            self.take()
            return Node("neg", (self.unary(),))
        if self.peek().text == "+":
            self.take()
            return self.unary()
        return self.atom()

    def atom(self) -> Node:
        tok = self.take()
        if tok.kind == "number":
            return Node.const(float(tok.text))
        if tok.text == "(":
            node = self.additive()
            self.expect(")")
            return node
        if tok.kind == "name":
            if self.peek().text == "(":
                return self.call(tok)
            if tok.text not in grammar.OPERANDS:
                hint = " (it is a function: call it with parentheses)" if tok.text in grammar.FUNCTION_NAMES else ""
                raise FormulaError(f"unknown name {tok.text!r} at position {tok.pos}{hint}; allowed {_allowed()}")
            return Node(tok.text)
        found = repr(tok.text) if tok.kind != "end" else "end of formula"
        raise FormulaError(f"unexpected {found} at position {tok.pos}; expected an operand, number, function or '('")

    def call(self, name: _Token) -> Node:
        if name.text not in grammar.FUNCTION_NAMES:
            raise FormulaError(f"unknown function {name.text!r} at position {name.pos}; allowed {_allowed()}")
        self.expect("(")
        args = [self.additive()]
        while self.peek().text == ",":
            self.take()
            args.append(self.additive())
        self.expect(")")
        return Node(name.text, tuple(args))


def parse(text: str) -> Node:
    """Parse and type-check ``text``; the result is a tree that returns one score per channel."""
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("empty formula; write e.g. 'l1(W) / (std(F) + 0.05)'")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"formula is {len(text)} characters long; at most {MAX_LENGTH} are allowed")
    parser = _Parser(text)
    try:
        node = parser.additive()
    except RecursionError:
        raise FormulaError("formula is nested too deeply; at most a few hundred levels are allowed") from None
    tail = parser.peek()
    if tail.kind != "end":
        raise FormulaError(f"unexpected {tail.text!r} at position {tail.pos} after a complete formula")
    result_type = type_of(node)
    if result_type is not grammar.Scores:
        raise FormulaError(
            f"the formula gives {grammar.TYPE_WORDS[result_type]}, not one score per channel; "
            "reduce it with one of: " + ", ".join(n for n in grammar.FUNCTION_NAMES
                                                  if getattr(grammar.resolve(n, (result_type,)), "ret", None)
                                                  is grammar.Scores)
        )
    return node
