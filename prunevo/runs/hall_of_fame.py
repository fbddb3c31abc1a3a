"""The hall of fame (best distinct formulas) and the Pareto front (fitness vs complexity).

Formulas are distinct when their simplified SymPy forms differ (``l1(W) * 2`` and ``l1(W) + l1(W)`` are
one entry) *and* when they select different channels somewhere: monotone variants of one criterion
(``l1(W)``, ``sqrt(l1(W))``, ``lnorm(l1(W))`` under uniform allocation) keep the same masks on every
task, so they are one entry: the simplest, with the others listed as its equivalents.  Entries are plain
data so that they round-trip through JSON checkpoints exactly.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from prunevo.primitives.formula import Formula


@dataclass
class Entry:
    """One formula of a hall of fame or Pareto front, with its measurement.

    Attributes:
        text: the formula's text.
        fitness: its fitness (relative accuracy, geometric mean over tasks; with racing, the mean over draws less
            ``race_risk`` standard deviations).
        complexity: its tree's node count.
        generation: the generation that first measured it.
        accuracy: top-1 (a fraction) by task.
        relative: accuracy relative to the unpruned network's, by task.
        key: its SymPy canonical form (formulas SymPy proves equal share it).
        selection: a hash of the channels it selects on every task ("" in older runs).
        equivalents: other formulas that select the same channels.
        rescored: its re-scoring on fresh seeds and held-out data.
        draws: its fitness on each race draw ([]: not raced).
    """

    text: str
    fitness: float
    complexity: int
    generation: int
    accuracy: dict[str, float] = field(default_factory=dict)
    relative: dict[str, float] = field(default_factory=dict)
    key: str = ""
    selection: str = ""  # hash of the masks selected on every task ("" when unknown: older runs)
    equivalents: list[str] = field(default_factory=list)  # other formulas that select the same masks
    rescored: dict | None = None  # fresh seeds on data evolution never used (see evolve.rescore)
    draws: list[float] = field(default_factory=list)  # fitness on each race draw, draw 0 first ([]: not raced)

    @property
    def formula(self) -> Formula:
        """The formula, parsed."""
        return Formula.parse(self.text)

    def sort_key(self) -> tuple:
        """Best fitness first; among equals the simpler, then the text (deterministic everywhere)."""
        return (-self.fitness, self.complexity, self.text)

    def simplicity(self) -> tuple:
        """Which of two formulas that select the same channels is shown: the smaller, then the shorter text."""
        return (self.complexity, len(self.text), self.text)

    def describe(self) -> dict:
        """The entry with its simplified text, SymPy and LaTeX (``hall_of_fame.json``'s rows)."""
        formula = self.formula
        return {**asdict(self), "simplified": formula.simplified.text, "sympy": str(formula.sympy),
                "latex": formula.latex()}


MAX_EQUIVALENTS = 10


class HallOfFame:
    """The best ``size`` distinct formulas of a run, best first (DEAP's ``tools.HallOfFame``, made distinct).

    Two formulas are one entry when SymPy proves them equal (the better measurement stays) or when they select
    the same channels on every task (the simpler stays, the other is listed among its ``equivalents``).

    Args:
        size: how many entries it keeps.
        entries: entries to start from (a checkpoint's), sorted on arrival.

    Example:
        >>> from prunevo.runs.hall_of_fame import Entry, HallOfFame
        >>> hof = HallOfFame(2)
        >>> for text, fitness in [("l1(W)", 0.8), ("l1(W) + 0", 0.8), ("l2(W)", 0.9), ("std(W)", 0.7)]:
        ...     hof.offer(Entry(text, fitness, complexity=len(text), generation=0))
        >>> [(e.text, e.fitness) for e in hof.entries]
        [('l2(W)', 0.9), ('l1(W)', 0.8)]
    """

    def __init__(self, size: int, entries: list[Entry] | None = None):
        self.size = size
        self.entries: list[Entry] = sorted(entries or [], key=Entry.sort_key)

    def would_enter(self, fitness: float) -> bool:
        """Whether a formula of this fitness would be kept (before the cost of its canonical form)."""
        return len(self.entries) < self.size or fitness > self.entries[-1].fitness

    def offer(self, entry: Entry) -> None:
        """Keep the entry if it is among the best ``size`` distinct formulas."""
        if not self.would_enter(entry.fitness):
            return
        entry.key = entry.key or Formula.parse(entry.text).canonical_key
        for i, old in enumerate(self.entries):
            if old.key == entry.key:
                if entry.sort_key() < old.sort_key():
                    entry.equivalents = old.equivalents
                    self.entries[i] = entry
                    self.entries.sort(key=Entry.sort_key)
                return
            if entry.selection and old.selection == entry.selection:  # same masks everywhere: one entry
                keep, other = (entry, old) if entry.simplicity() < old.simplicity() else (old, entry)
                names = [*old.equivalents, *entry.equivalents, other.text]
                keep.equivalents = sorted(set(names) - {keep.text}, key=lambda t: (len(t), t))[:MAX_EQUIVALENTS]
                self.entries[i] = keep
                self.entries.sort(key=Entry.sort_key)
                return
        self.entries.append(entry)
        self.entries.sort(key=Entry.sort_key)
        del self.entries[self.size:]

    @property
    def best(self) -> Entry | None:
        """The first entry, or None while empty."""
        return self.entries[0] if self.entries else None


class ParetoFront:
    """The best formula at each complexity, then only those no simpler formula beats."""

    def __init__(self, by_complexity: dict[int, Entry] | None = None):
        self.by_complexity: dict[int, Entry] = dict(by_complexity or {})

    def offer(self, entry: Entry) -> None:
        """Keep the entry if it beats the one of its complexity."""
        old = self.by_complexity.get(entry.complexity)
        if old is None or entry.sort_key() < old.sort_key():
            self.by_complexity[entry.complexity] = entry

    @property
    def front(self) -> list[Entry]:
        """Simplest first, each better than every simpler one."""
        out, best = [], float("-inf")
        for complexity in sorted(self.by_complexity):
            entry = self.by_complexity[complexity]
            if entry.fitness > best:
                out.append(entry)
                best = entry.fitness
        return out
