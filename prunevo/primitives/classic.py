"""The classic hand-made criteria, each written as a formula of the grammar.

They seed the first population of every evolution run and are the baselines of every report.
``random`` is a baseline outside the grammar (see ``prunevo.pruning.criteria``).
"""
from __future__ import annotations

from prunevo.primitives.formula import Formula

CLASSIC_TEXT: dict[str, str] = {
    "l1": "l1(W)",  # Li et al. 2017, filter L1 norm
    "l2": "l2(W)",
    "bn": "abs(gamma)",  # Liu et al. 2017, network slimming
    "taylor": "abs(mean(F * G))",  # Molchanov et al. 2017, first-order Taylor
    "apoz": "-sparsity(F)",  # Hu et al. 2016, average percentage of zeros (fewer zeros = keep)
    "activation": "mean(F)",  # mean activation
    "snr": "var(cmean(F)) / (mean(cvar(F)) + 0.05)",  # Fisher-type: between- over within-class variance
    "fpgm": "fpgm(W)",  # He et al. 2019, distance from the geometric median
}


def classic_formulas() -> dict[str, Formula]:
    return {name: Formula.parse(text, name=name) for name, text in CLASSIC_TEXT.items()}


def classic_formula(name: str) -> Formula:
    return Formula.parse(CLASSIC_TEXT[name], name=name)
