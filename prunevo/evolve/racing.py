"""Racing in the GP loop, and the best seed chosen the way the winner is.

Each generation the best ``config.race`` new selections are measured on the race's extra calibration draws
(``fitness.racing``) and every individual of a raced formula then carries the mean over its draws; with
racing on, only raced formulas enter the hall of fame, so the winner (the hall of fame's first) is picked on a
mean of ``race_draws`` draws, not on one lucky one.

The search's own contribution is its winner against the best *seed* (the classic criteria, the Torch-Pruning
forms and their layer-normalized forms that start the population, and every baseline under every allocation
scored), the best seed chosen on validation data by the same rule: ranked by one draw, the best ``race`` of
them raced, the best raced value wins (without racing: the best single draw).
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field

from prunevo.evolve.engine import seed_formulas
from prunevo.evolve.individuals import Individual
from prunevo.fitness.evaluator import Evaluator, FitnessResult
from prunevo.fitness.racing import Race, raced_value
from prunevo.fitness.scoring import baselines_from_json, own_allocation
from prunevo.primitives.formula import Formula
from prunevo.pruning.criteria import BASELINE_NAMES, RANDOM, FormulaCriterion, as_baseline
from prunevo.runs.config import EvolutionConfig


@dataclass
class Raced:
    """A formula measured on every race draw: its fitness on each (draw 0 first) and, per task, its accuracy
    and relative accuracy averaged over the draws where it was valid."""

    draws: list[float]
    accuracy: dict[str, float] = field(default_factory=dict)
    relative: dict[str, float] = field(default_factory=dict)
    risk: float = 0.0  # standard deviations over the draws taken off their mean (``fitness.racing.raced_value``)

    @property
    def fitness(self) -> float:
        """What selection and the hall of fame read: the mean over the draws less ``risk`` standard deviations."""
        return raced_value(self.draws, self.risk)


def _raced(results: list[FitnessResult], risk: float) -> Raced:
    valid = [r for r in results if r.valid]
    tasks = valid[0].accuracy if valid else {}
    return Raced([r.fitness for r in results],
                 {t: statistics.fmean(r.accuracy[t] for r in valid) for t in tasks},
                 {t: statistics.fmean(r.relative[t] for r in valid) for t in tasks}, risk)


@dataclass
class Racing:
    """The run's race (its extra draws) and what it has raced (text -> Raced); ``leaders`` per generation."""

    race: Race
    leaders: int
    raced: dict[str, Raced] = field(default_factory=dict)
    risk: float = 0.0

    def run(self, population: list[Individual], fresh: list) -> list[tuple[Individual, Formula, FitnessResult, Raced]]:
        """``race_leaders`` on this race."""
        return race_leaders(population, fresh, self.race, self.raced, self.leaders, self.risk)

    def close(self) -> None:
        """Release what the race's evaluators hold (the shared backend stays open)."""
        self.race.close()

    def to_json(self) -> dict:
        """What checkpoints keep: the raced formulas and each draw's fitness cache."""
        return {"raced": {t: asdict(r) for t, r in sorted(self.raced.items())}, "caches": self.race.caches}

    @classmethod
    def start(cls, config: EvolutionConfig, evaluator: Evaluator, saved: dict | None = None) -> "Racing | None":
        """The run's racing on the evaluator's tasks and backend (None when ``config.race`` is 0), restored from
        a checkpoint's ``saved`` form."""
        if not config.race:
            return None
        saved = saved or {}
        race = Race(evaluator.tasks, config.race_draws, execution=config.execution, seed=config.seed,
                    backend=evaluator.backend, caches=saved.get("caches"))
        return cls(race, config.race, {t: Raced(**r) for t, r in saved.get("raced", {}).items()}, config.race_risk)


def race_leaders(population: list[Individual], fresh: list[tuple[Individual, Formula, FitnessResult]], race: Race,
                 raced: dict[str, Raced], leaders: int,
                 risk: float = 0.0) -> list[tuple[Individual, Formula, FitnessResult, Raced]]:
    """Race the generation's best ``leaders`` new selections: of ``fresh`` (what ``evaluate_population``
    returned), the valid top-rung results of formulas not raced before, best first; formulas sharing a selection
    with a chosen one ride along (their draw 0 is the same; other draws mostly come from the cache).  Then every
    individual of a raced formula (``raced``: text -> Raced, updated) gets its raced fitness (``risk``: see
    ``fitness.racing.raced_value``).  Returns what was raced now: (individual, formula, draw-0 result, Raced)."""
    chosen: list[tuple[Individual, Formula, FitnessResult]] = []
    texts, selections = set(), set()
    for ind, formula, result in sorted(fresh, key=lambda t: -t[2].fitness):  # stable: ties keep population order
        if not (result.valid and result.complete) or formula.text in raced or formula.text in texts:
            continue
        if result.selection not in selections:
            if len(selections) >= leaders:
                break
            selections.add(result.selection)
        texts.add(formula.text)
        chosen.append((ind, formula, result))
    measured = race.measure([FormulaCriterion(f) for _, f, _ in chosen]) if chosen else []
    out = []
    for i, (ind, formula, result) in enumerate(chosen):
        raced[formula.text] = _raced([result, *(draw[i] for draw in measured)], risk)
        out.append((ind, formula, result, raced[formula.text]))
    for ind in population:
        text = ind.formula.text
        if text in raced:
            ind.fitness.values = (raced[text].fitness,)
    return out


def choose_best_seed(config: EvolutionConfig, evaluator: Evaluator, racing: Racing | None,
                     baselines: dict[str, dict]) -> dict | None:
    """The best seed on validation data, chosen as the winner is (see the module docstring): a dict with its
    ``name``, ``kind`` (``seed``: a formula of the initial population; ``baseline``: a classic or Torch-Pruning
    criterion), ``allocation``, ``draws`` (fitness per draw), ``validation`` (the value it was chosen on, as the
    winner's: ``fitness.racing.raced_value`` with the run's ``race_risk``), ``mean`` (the draws' mean) and
    ``candidates`` (every seed it was chosen from: name, kind, allocation, draws).  None when no seed or
    baseline is valid on every task."""
    race, raced = (racing.race, racing.raced) if racing is not None else (None, {})
    own = own_allocation(evaluator.tasks)
    candidates = []
    if config.seed_classics:
        normalized = any(t.allocation == "global" for t in config.task_list())
        seeds = seed_formulas(normalized)[: config.population]
        results = evaluator.evaluate([FormulaCriterion(f) for f in seeds], full=True)
        candidates += [{"name": f.text, "kind": "seed", "allocation": own, "draws": [r.fitness]}
                       for f, r in zip(seeds, results) if r.valid]
    candidates += [{"name": row.name, "kind": "baseline", "allocation": row.allocation or own, "draws": [row.fitness]}
                   for row in baselines_from_json(baselines)
                   if row.comparable and row.name in BASELINE_NAMES and row.name != RANDOM]
    if not candidates:
        return None
    candidates.sort(key=lambda c: -c["draws"][0])  # stable: ties keep seeds first, then baselines.json's order
    top = candidates[: config.race] if race is not None else candidates[:1]
    if race is not None:
        for allocation in dict.fromkeys(c["allocation"] for c in top):
            todo = [c for c in top if c["allocation"] == allocation
                    and not (c["kind"] == "seed" and c["name"] in raced)]
            criteria = [FormulaCriterion(Formula.parse(c["name"])) if c["kind"] == "seed"
                        else as_baseline(c["name"], allocation) for c in todo]
            measured = race.measure(criteria, allocation) if criteria else []
            for i, c in enumerate(todo):
                c["draws"] += [draw[i].fitness for draw in measured]
        for c in top:
            if c["kind"] == "seed" and c["name"] in raced:
                c["draws"] = list(raced[c["name"]].draws)
    risk = config.race_risk if race is not None else 0.0
    best = max(top, key=lambda c: raced_value(c["draws"], risk))  # the first of equals
    return {**best, "validation": raced_value(best["draws"], risk), "mean": statistics.fmean(best["draws"]),
            "candidates": [{**c, "draws": [round(d, 6) for d in c["draws"]]} for c in top]}
