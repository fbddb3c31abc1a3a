"""The design space: operands, typed grammar, ``Formula`` and the classic criteria."""
from prunevo.primitives.classic import CLASSIC_TEXT, classic_formula, classic_formulas
from prunevo.primitives.formula import Formula
from prunevo.primitives.operands import LayerStats

__all__ = ["CLASSIC_TEXT", "Formula", "LayerStats", "classic_formula", "classic_formulas"]
