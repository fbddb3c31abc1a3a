"""Strategy names as table columns: a strategy plus, for channel pruning, its allocation.

``uniform``, ``global``, ``random-search``: one-shot channel pruning with that allocation;
``layer``: layer pruning; ``iterative`` / ``iterative-global`` / ``iterative-random-search``: IMP cycles
with that allocation; ``unstructured``: the global-magnitude IMP baseline.
"""
from __future__ import annotations

from prunevo.errors import PrunevoError
from prunevo.pruning.allocation import ALLOCATIONS

STRATEGIES = ("channel", "layer", "iterative", "unstructured")
STRATEGY_NAMES = ALLOCATIONS + ("layer", "unstructured") + tuple(f"iterative-{a}" for a in ALLOCATIONS[1:]) + (
    "iterative",)
BENCHMARK_STRATEGIES = ("uniform", "global", "random-search", "layer", "iterative")
BENCHMARK_CRITERIA = ("l1", "l2", "bn", "taylor", "fpgm", "random")


def variant_name(strategy: str, allocation: str = "uniform") -> str:
    if strategy == "channel":
        return allocation
    if strategy == "iterative":
        return "iterative" if allocation == "uniform" else f"iterative-{allocation}"
    return strategy


def strategy_changes(name: str) -> dict:
    """The TransferConfig fields of a strategy named like a table column."""
    for strategy in STRATEGIES:
        for allocation in ALLOCATIONS:
            if variant_name(strategy, allocation) == name:
                return {"strategy": strategy} if strategy in ("layer", "unstructured") else \
                    {"strategy": strategy, "allocation": allocation}
    raise PrunevoError(f"unknown strategy {name!r}; allowed: {', '.join(STRATEGY_NAMES)}")
