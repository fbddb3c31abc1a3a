"""Variants: strategy names as table columns, a strategy plus, for channel pruning, its allocation
(``TransferConfig.variant``, ``ApplyResult.strategy``).

``uniform``, ``global``, ``random-search``: one-shot channel pruning with that allocation;
``layer``: layer pruning; ``iterative`` / ``iterative-global`` / ``iterative-random-search``: IMP cycles
with that allocation; ``unstructured``: the global-magnitude IMP baseline.
"""
from __future__ import annotations

from prunevo.errors import PrunevoError
from prunevo.pruning.allocation import ALLOCATIONS
from prunevo.transfer.strategies import RUNNERS, USES_ALLOCATION

STRATEGIES = tuple(RUNNERS)
BENCHMARK_STRATEGIES = ("uniform", "global", "random-search", "layer", "iterative")
BASELINES_WORD = "baselines"  # in a list of criteria: every classic and Torch-Pruning criterion
COMPARE_CRITERIA = (BASELINES_WORD,)
BENCHMARK_CRITERIA = ("l1", "l2", "bn", "taylor", "fpgm", "tp-l2", "tp-taylor", "random")


def variant_name(strategy: str, allocation: str = "uniform") -> str:
    if strategy == "channel":
        return allocation
    if strategy == "iterative":
        return "iterative" if allocation == "uniform" else f"iterative-{allocation}"
    return strategy


# name -> TransferConfig fields; layer and unstructured pruning do not use an allocation
_CHANGES = {variant_name(s, a): {"strategy": s, "allocation": a} if s in USES_ALLOCATION else {"strategy": s}
            for s in STRATEGIES for a in ALLOCATIONS}
STRATEGY_NAMES = tuple(_CHANGES)


def strategy_changes(name: str) -> dict:
    """The TransferConfig fields of a strategy named like a table column."""
    if name in _CHANGES:
        return dict(_CHANGES[name])
    raise PrunevoError(f"unknown strategy {name!r}; allowed: {', '.join(STRATEGY_NAMES)}")
