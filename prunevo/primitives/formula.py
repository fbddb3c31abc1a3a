"""``Formula``: the one value type for a pruning criterion.

It converts tree <-> exact text <-> SymPy (simplified) <-> LaTeX <-> JSON <-> Python source, scores a
layer's channels, and has a complexity and a canonical key (identical for algebraically equal formulas).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import sympy
import torch

from prunevo.errors import FormulaError
from prunevo.primitives import export_latex, export_python, export_sympy
from prunevo.primitives.evaluate import compile_tree
from prunevo.primitives.operands import LayerStats
from prunevo.primitives.parser import parse
from prunevo.primitives.tree import CONST, Node, to_text

JSON_VERSION = 1


@dataclass(frozen=True)
class Formula:
    """A closed-form pruning criterion: one score per output channel of a layer, higher = keep the channel.

    Written in the grammar of ``primitives.grammar`` (operands ``W``, ``Wn``, ``F``, ``G``, ``gamma``,
    ``beta``, ``macs``; reductions ``l1``, ``std``, ``fpgm``...; ``+ - * /``), parsed by a whitelist, never
    ``eval``'d; exported as text, simplified text, SymPy, LaTeX and a standalone torch function.

    Attributes:
        tree: the typed expression tree.
        name: an optional name (a classic's: ``l1``); not part of equality.

    Raises:
        FormulaError: from ``parse``/``from_json``, for text outside the grammar, naming the position.

    Example:
        >>> from prunevo import Formula
        >>> formula = Formula.parse("l1(W) * gamma / (std(F) + 0.1)")
        >>> formula.simplified.text, sorted(formula.operands), formula.complexity
        ('gamma * l1(W) / (0.1 + std(F))', ['F', 'W', 'gamma'], 9)
        >>> Formula.parse("l1(W")
        Traceback (most recent call last):
        ...
        prunevo.errors.FormulaError: expected ')' at position 4, found end of formula
    """

    tree: Node
    name: str = field(default="", compare=False)

    # --- construction --------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str, name: str = "") -> "Formula":
        """Parse text written by a person (whitelist parser, never ``eval``)."""
        return cls(parse(text), name)

    @classmethod
    def from_json(cls, data: dict[str, Any] | str) -> "Formula":
        """The formula of ``to_json``'s object (or its JSON text); only ``text`` and ``name`` are read.

        Raises:
            FormulaError: malformed JSON, no ``text``, or text outside the grammar.
        """
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                raise FormulaError(f"formula JSON is malformed: {exc.msg} (line {exc.lineno})") from None
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            raise FormulaError("formula JSON must be an object with a 'text' field holding the formula")
        return cls.parse(data["text"], name=str(data.get("name", "")))

    # --- views ---------------------------------------------------------------------------------
    @cached_property
    def text(self) -> str:
        """Exact text: parses back to the same tree."""
        return to_text(self.tree)

    @cached_property
    def operands(self) -> frozenset[str]:
        """The operands the formula reads (``W``, ``gamma``...)."""
        return frozenset(n.name for n in self.tree.walk() if not n.args and n.name != CONST)

    @property
    def complexity(self) -> int:
        """Number of nodes in the tree."""
        return self.tree.size()

    @cached_property
    def sympy(self) -> sympy.Expr:
        """Simplified SymPy expression (reductions are symbols named by their text)."""
        return export_sympy.simplify(export_sympy.to_sympy(self.tree), self.complexity)

    @cached_property
    def canonical_key(self) -> str:
        """Equal for formulas that SymPy proves equal: identifies duplicates in the hall of fame."""
        return sympy.srepr(self.sympy)

    @cached_property
    def simplified(self) -> "Formula":
        """The simplified formula as a tree, or this formula when the grammar cannot express the result."""
        try:
            tree = export_sympy.from_sympy(self.sympy)
        except FormulaError:
            return self
        candidate = Formula(tree, self.name)
        return candidate if candidate.complexity <= self.complexity else self

    def latex(self) -> str:
        """LaTeX of the simplified form, reductions as operators (``\\operatorname{l1}\\left(W\\right)``)."""
        return export_latex.to_latex(self.sympy)

    def python(self, function_name: str = "criterion") -> str:
        """Source of a standalone torch function ``criterion(W, Wn, F, G, gamma, beta, onehot, macs=None)``
        returning one score per channel ``[C]`` (``export_python.to_python``)."""
        return export_python.to_python(self.tree, function_name, self.text)

    def to_json(self) -> dict[str, Any]:
        """Text, simplified text, SymPy, LaTeX and complexity, as ``prunevo export --format json`` writes."""
        return {
            "version": JSON_VERSION,
            "name": self.name,
            "text": self.text,
            "simplified": self.simplified.text,
            "sympy": str(self.sympy),
            "latex": self.latex(),
            "complexity": self.complexity,
        }

    # --- scoring -------------------------------------------------------------------------------
    @cached_property
    def _compiled(self):
        return compile_tree(self.tree)

    def score(self, stats: LayerStats) -> torch.Tensor:
        """One score per output channel of the layer described by ``stats`` (higher = keep).

        Args:
            stats: the layer's statistics (``operands.LayerStats``: ``W`` ``[C, D]``, ``F`` ``[C, N, S]``...).

        Returns:
            ``[C]`` scores in the statistics' dtype.
        """
        return self._compiled(stats)

    def __str__(self) -> str:
        return self.text

    def __getstate__(self) -> dict:
        # cached views (compiled closures, SymPy objects) are rebuilt on demand after unpickling
        return {"tree": self.tree, "name": self.name}

    def __setstate__(self, state: dict) -> None:
        object.__setattr__(self, "tree", state["tree"])
        object.__setattr__(self, "name", state["name"])
